"""Embedding stage: decoded RGB images -> tensors -> model -> float32 vectors.

* :class:`ModelSpec` (from :mod:`pgvision.registry`) is what ``pgvision.models`` records
  about a model (name, dims, metric, normalisation, preprocessing, weights digest).
* :func:`build_transform` turns a spec's ``preprocessing`` dict into the function that the
  DataLoader workers apply to each image: resize the shorter side, centre-crop, scale to
  [0, 1], standardise per channel. The dict is the single source of truth, stored in the
  database, so that a probe image is prepared exactly like the stored ones.
* :class:`ImageEmbedder` runs a model on batches of such tensors under
  ``torch.inference_mode`` and returns ``(N, D) float32`` NumPy arrays, L2-normalised for
  cosine models.

The model zoo (which names exist, where their weights come from) is :mod:`pgvision.models`.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2 as T

from pgvision.errors import InvalidValue
from pgvision.ingest.vector_files import (
    l2_normalize,  # numpy only: the core install's load-vectors uses it
)
from pgvision.registry import METRICS, ModelSpec

__all__ = [
    "METRICS",
    "ModelSpec",
    "ImageEmbedder",
    "PendingEmbeddings",
    "build_transform",
    "preprocessing_dict",
    "l2_normalize",
]

#: ImageNet channel statistics on the [0, 1] scale, as torchvision's weights use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocessing_dict(
    resize: int,
    crop: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
    **extra,
) -> dict:
    """A ``preprocessing`` dict in the form :func:`build_transform` reads.

    Args:
        resize: the shorter side is resized to this many pixels (aspect kept).
        crop: then a centred ``crop x crop`` square is cut.
        mean, std: per-channel (R, G, B) statistics on the [0, 1] pixel scale; the input is
            ``(x / 255 - mean) / std``.
        interpolation: ``bilinear`` or ``bicubic`` (Pillow's, antialiased).
        extra: recorded as is (e.g. ``source``).
    """
    return {
        "resize": int(resize),
        "crop": int(crop),
        "interpolation": interpolation,
        "mean": [float(m) for m in mean],
        "std": [float(s) for s in std],
        **extra,
    }


def build_transform(preprocessing: dict) -> Callable[[Image.Image], torch.Tensor]:
    """The function that turns an RGB ``PIL.Image`` into a model input tensor.

    Args:
        preprocessing: dict from :func:`preprocessing_dict`.

    Returns:
        A picklable callable (DataLoader workers use it) giving ``(3, crop, crop)``
        ``torch.float32`` tensors.
    """
    interpolation = {
        "bilinear": T.InterpolationMode.BILINEAR,
        "bicubic": T.InterpolationMode.BICUBIC,
    }[preprocessing.get("interpolation", "bilinear")]
    return T.Compose(
        [
            T.Resize(preprocessing["resize"], interpolation=interpolation, antialias=True),
            T.CenterCrop(preprocessing["crop"]),
            T.PILToTensor(),
            T.ToDtype(torch.float32, scale=True),
            T.Normalize(preprocessing["mean"], preprocessing["std"]),
        ]
    )


def sha256_hex_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file (weights digests)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cpu``/``cuda`` as given.

    Raises:
        ValueError: ``cuda`` asked for but not available, or an unknown name.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidValue("--device cuda was given but torch sees no CUDA GPU; pass --device cpu")
    if device not in ("cpu", "cuda"):
        raise InvalidValue(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


class ImageEmbedder:
    """A model ready to embed batches of preprocessed images.

    Args:
        spec: the model's :class:`ModelSpec`.
        module: a ``torch.nn.Module`` (or TorchScript module) mapping ``(N, 3, H, W)``
            float32 to ``(N, D)`` (or ``(N, D, 1, 1)``, flattened here).
        device: where to run it.
        channels_last: use ``torch.channels_last`` memory format (1.4-1.8x faster for
            convolutional nets on CPU here, see ../shared/ENVIRONMENT.md).

    Attributes:
        spec, module, device, transform (from ``spec.preprocessing``).
    """

    def __init__(
        self,
        spec: ModelSpec,
        module: torch.nn.Module,
        device: str | torch.device = "cpu",
        channels_last: bool = True,
    ) -> None:
        self.spec = spec
        self.device = torch.device(device)
        self.channels_last = channels_last
        module = module.eval().to(self.device)
        if channels_last and not isinstance(module, torch.jit.ScriptModule):
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.transform = build_transform(spec.preprocessing)

    def forward(self, batch: torch.Tensor) -> np.ndarray:
        """Raw model outputs, not normalised.

        Args:
            batch: ``(N, 3, H, W)`` float32 tensor from :attr:`transform`.

        Returns:
            ``(N, D)`` float32 NumPy array.
        """
        return self._forward_tensor(batch).cpu().numpy()

    def _forward_tensor(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.module(batch)
        if isinstance(out, (tuple, list)):
            out = out[0]
        return out.reshape(out.shape[0], -1).float()

    def embed_async(self, batch: torch.Tensor) -> "PendingEmbeddings":
        """Start the model on ``batch`` and return without waiting for a CUDA device.

        On CUDA the kernels are queued and this returns at once: the caller prepares the
        next batch while the GPU works, and :meth:`PendingEmbeddings.result` (e.g. in the
        loader's writer thread) waits for the vectors. On the CPU the model runs here.

        ``batch`` (and the channels-last copy made here) may be freed as soon as this returns:
        PyTorch's caching allocator reuses a block only in its stream's order. Code that writes
        device memory outside that order (nvJPEG's decoder) must first wait for the queued
        kernels: :func:`pgvision.ingest.decode_gpu.wait_for_queued_work`, which every device
        decode calls.

        Args:
            batch: ``(N, 3, H, W)`` float32 tensor, on any device.

        Returns:
            :class:`PendingEmbeddings`.
        """
        timed = self.device.type == "cuda"
        if timed:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        else:
            t0 = time.perf_counter()
        out = self._forward_tensor(batch)
        if timed:
            end.record()
            return PendingEmbeddings(self, out, events=(start, end))
        return PendingEmbeddings(self, out, seconds=time.perf_counter() - t0)

    def warm_up(self, batch_size: int) -> None:
        """Run the model once on zeros of the loader's batch shape (CUDA only; no-op on CPU).

        The first CUDA call of a shape pays for kernel selection and allocations (2,649 vs
        6,644 img/s for efficientnet-lite0 on an H100, ../shared/ENVIRONMENT.md); on the
        CPU a warm-up would cost a whole batch of model time, so it is skipped.
        """
        if self.device.type != "cuda":
            return
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels
        crop = int(self.spec.preprocessing.get("crop", 224))
        self._forward_tensor(torch.zeros((batch_size, 3, crop, crop), device=self.device)).cpu()

    def embed_batch(self, batch: torch.Tensor) -> np.ndarray:
        """Embeddings as stored: :meth:`forward`, then L2-normalised if ``spec.normalized``.

        Returns:
            ``(N, spec.dims)`` float32 NumPy array.

        Raises:
            ValueError: the model gave another width than ``spec.dims``.
        """
        return self._stored(self.forward(batch))

    def _stored(self, out: np.ndarray) -> np.ndarray:
        if out.shape[1] != self.spec.dims:
            raise InvalidValue(
                f"model {self.spec.name} gave {out.shape[1]}-d vectors but {self.spec.dims} were "
                f"declared; pass --dims {out.shape[1]}"
            )
        return l2_normalize(out) if self.spec.normalized else out.astype(np.float32, copy=False)

    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """Embed RGB images in one batch (the search command's probe path).

        Returns:
            ``(len(images), spec.dims)`` float32 NumPy array.
        """
        return self.embed_batch(torch.stack([self.transform(im) for im in images]))


class PendingEmbeddings:
    """Embeddings of one batch that the model may still be computing (:meth:`ImageEmbedder.embed_async`).

    Attributes:
        seconds: the model's time on this batch in seconds, known once :meth:`result` has
            returned: CUDA event timing on a GPU (device time, not the time the caller
            waited), wall clock on the CPU.
    """

    def __init__(self, embedder: ImageEmbedder, out: torch.Tensor, events=None, seconds: float = 0.0) -> None:
        self._embedder, self._out, self._events, self.seconds = embedder, out, events, seconds

    def result(self) -> np.ndarray:
        """``(N, spec.dims)`` float32 NumPy array as stored; waits for the device.

        Raises:
            ValueError: the model gave another width than ``spec.dims``.
        """
        out = self._out.cpu().numpy()
        if self._events is not None:
            self._events[1].synchronize()
            self.seconds = self._events[0].elapsed_time(self._events[1]) / 1000.0
        return self._embedder._stored(out)
