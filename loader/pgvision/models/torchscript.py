"""A user's own TorchScript image model (``--model torchscript:PATH --dims D --metric M``).

The file is loaded with ``torch.jit.load``; it must map ``(N, 3, crop, crop)`` float32 to
``(N, D)`` (or anything that flattens to it). Preprocessing defaults to torchvision's
ImageNet recipe (shorter side 256 bilinear, crop 224, ImageNet mean/std); the output width
is checked against ``--dims`` with one forward pass before anything is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pgvision.errors import ModelUnavailable
from pgvision.models.embed import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    METRICS,
    ModelSpec,
    preprocessing_dict,
    sha256_hex_file,
)


def build(
    path: str,
    dims: int | None,
    metric: str | None,
    name: str | None = None,
    preprocessing: dict | None = None,
) -> tuple[ModelSpec, torch.nn.Module]:
    """Load a TorchScript model.

    Args:
        path: the ``.pt`` file saved with ``torch.jit.save``.
        dims: its output width D (required).
        metric: ``cosine`` (vectors stored L2-normalised), ``l2`` or ``inner_product``.
        name: registered name; default ``torchscript:<file stem>``.
        preprocessing: default :func:`preprocessing_dict` with ImageNet statistics.

    Raises:
        pgvision.models.ModelUnavailable: missing file/dims/metric, not TorchScript, or
            an output width other than ``dims``.
    """

    if not os.path.isfile(path):
        raise ModelUnavailable(f"no such TorchScript file: {path}")
    if not dims or not metric:
        raise ModelUnavailable(
            f"a TorchScript model needs its output size and metric; pass --dims D --metric "
            f"{'|'.join(METRICS)} (got dims={dims}, metric={metric})"
        )
    if metric not in METRICS:
        raise ModelUnavailable(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:
        raise ModelUnavailable(
            f"{path} is not a TorchScript file ({type(exc).__name__}: {exc}); save it with torch.jit.save"
        ) from None
    module.eval()
    prep = preprocessing or preprocessing_dict(256, 224, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
    with torch.inference_mode():
        out = module(torch.zeros(1, 3, prep["crop"], prep["crop"]))
    got = int(out.reshape(1, -1).shape[1])
    if got != dims:
        raise ModelUnavailable(
            f"TorchScript model {path} gives {got}-d vectors but --dims is {dims}; pass --dims {got}"
        )
    spec = ModelSpec(
        kind="image",
        name=name or f"torchscript:{Path(path).stem}",
        dims=int(dims),
        metric=metric,
        normalized=metric == "cosine",
        preprocessing=dict(prep, source="torchscript"),
        weights_sha256=sha256_hex_file(path),
    )
    return spec, module
