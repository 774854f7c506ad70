"""Any torchvision classification model by name (``squeezenet1_1``, ``resnet50``, ...).

Weights: torchvision's default ImageNet weights (``get_model_weights(name).DEFAULT``),
downloaded once into the torch cache (``torch.hub.get_dir()/checkpoints``) where the internet
is reachable, or a local state_dict file given with ``--weights FILE``. Offline without a
file: :class:`pgvision.models.ModelUnavailable` names both ways.

Embedding: by default the features *before the classifier*: the model's last ``Linear``
layer (or, for SqueezeNet, which ends in a 1x1 convolution, its last ``Conv2d``) is replaced
by ``Identity``, so the output is what fed it: ResNet-50 2048-d and SqueezeNet 1.1 512-d
globally pooled features, VGG-16 4096-d fc7, ViT-B/16 768-d class token, MobileNetV3
1024/1280-d. ``output="logits"`` keeps the classifier (1000 ImageNet scores; the AnalyticDB
tutorial stores SqueezeNet's 1000 outputs). D is measured with one forward pass.

Preprocessing: the one the weights were trained with, from torchvision's
``weights.transforms()`` (``resize_size``, ``crop_size``, mean, std, interpolation).
"""

from __future__ import annotations

import os

import torch
import torchvision.models as tvm
from torch import nn

from pgvision.errors import InvalidValue, ModelUnavailable, PathNotFound
from pgvision.models.embed import ModelSpec, preprocessing_dict, sha256_hex_file


def classification_models() -> list[str]:
    """Names of torchvision's image classification models (``torchvision.models.list_models``)."""
    return tvm.list_models(module=tvm)


def _cached_path(url: str) -> str:
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _default_state_dict(name: str, weights_enum) -> tuple[dict, str]:

    path = _cached_path(weights_enum.url)
    try:
        state = weights_enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, HTTPError, socket timeouts, hash mismatch
        raise ModelUnavailable(
            f"cannot download torchvision's weights for {name} from {weights_enum.url} "
            f"({type(exc).__name__}); either run once where the internet is reachable (they are "
            f"then cached in {os.path.dirname(path)}) or pass --weights FILE (a state_dict .pth of {name})"
        ) from None
    return state, path


def replace_classifier(module: nn.Module) -> str:
    """Replace the last ``Linear`` (else last ``Conv2d``) submodule by ``Identity``.

    Returns:
        The dotted name of the replaced submodule (e.g. ``fc``, ``classifier.1``).

    Raises:
        ValueError: the model has neither.
    """
    last = None
    for kind in (nn.Linear, nn.Conv2d):
        for qualified, sub in module.named_modules():
            if isinstance(sub, kind):
                last = qualified
        if last is not None:
            break
    if last is None:
        raise InvalidValue("found no Linear or Conv2d classifier layer to remove")
    parent_name, _, child = last.rpartition(".")
    parent = module.get_submodule(parent_name) if parent_name else module
    setattr(parent, child, nn.Identity())
    return last


def build(name: str, output: str = "features", weights: str | None = None) -> tuple[ModelSpec, nn.Module]:
    """A torchvision classification model and its spec.

    Args:
        name: a name from :func:`classification_models`.
        output: ``features`` (before the classifier) or ``logits``.
        weights: path of a state_dict ``.pth`` (keys as torchvision's); default: torchvision's
            default ImageNet weights from the torch cache or the internet.

    Returns:
        ``(spec, module)`` with ``spec.metric == "cosine"`` and normalised vectors.

    Raises:
        ModelUnavailable: unknown name, or no weights (offline, no file).
        FileNotFoundError: ``weights`` does not exist.
    """
    from pgvision.models.weights import load_state_dict_file

    if name not in classification_models():
        raise ModelUnavailable(
            f"unknown model {name!r}; use efficientnet-lite0, torchscript:PATH, or a torchvision "
            f"classification model such as squeezenet1_1, resnet50 "
            f"(python -c 'import torchvision; print(torchvision.models.list_models())')"
        )
    weights_enum = tvm.get_model_weights(name).DEFAULT
    module = tvm.get_model(name, weights=None)
    if weights:
        if not os.path.isfile(weights):
            raise PathNotFound(f"no such weights file: {weights}")
        state = load_state_dict_file(weights, name)
        path = weights
    else:
        state, path = _default_state_dict(name, weights_enum)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelUnavailable(f"weights file {path} does not fit torchvision's {name}: {first}") from None
    module.eval()
    t = weights_enum.transforms()
    interpolation = t.interpolation.value  # "bilinear" / "bicubic"
    crop = int(t.crop_size[0])
    replaced = None
    if output == "features":
        replaced = replace_classifier(module)
    with torch.inference_mode():
        dims = int(module(torch.zeros(1, 3, crop, crop)).reshape(1, -1).shape[1])
    spec = ModelSpec(
        kind="image",
        name=name if output == "features" else f"{name}-logits",
        dims=dims,
        metric="cosine",
        normalized=True,
        preprocessing=preprocessing_dict(
            resize=int(t.resize_size[0]),
            crop=crop,
            mean=tuple(t.mean),
            std=tuple(t.std),
            interpolation=interpolation,
            source=f"torchvision:{name}",
            output=output if replaced is None else f"features (input of {replaced})",
        ),
        weights_sha256=sha256_hex_file(path),
    )
    return spec, module
