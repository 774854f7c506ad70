"""The decode stage's file side, run in the DataLoader workers: read, check, decode or defer.

For each file to load (:class:`FileItem`: path + the SHA-256 found when hashing),
:class:`ImageFileDataset` reads the bytes (:func:`pgvision.ingest.files.read_file`: regular files
only, size limit, never blocks) and then either

* decodes them with Pillow, applies the model's transform (the CPU path:
  :func:`pgvision.ingest.images.decode_image` + :func:`pgvision.models.embed.build_transform`)
  and takes the perceptual hash of the same pixels
  (:func:`pgvision.ingest.perceptual_hash.perceptual_hash`), or
* for a file the device decoder takes (``defer``: :func:`pgvision.ingest.decode_gpu.deferrable`,
  which checks the header's limits first), keeps the bytes and a record built from the
  header, for :meth:`pgvision.ingest.decode_gpu.TensorDecoder.finish` in the main process
  (no Pillow pixels: such images get their hash from ``pgvision duplicates --fill-hashes``).

Files that cannot be used become skip reasons (:data:`pgvision.ingest.files.SKIP_REASONS`), never
exceptions. :func:`collate_decoded` makes a :class:`DecodedBatch` of ``batch_size`` items;
:func:`cpu_finish` is the CPU path's (trivial) main-process step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from pgvision.ingest.files import FileSkipped, file_uri, read_file
from pgvision.ingest.images import ImageSkipped, decode_image, sha256_bytes
from pgvision.ingest.perceptual_hash import PerceptualHash, perceptual_hash
from pgvision.ingest.pg_copy import ImageRecord
from pgvision.text import name_text

__all__ = ["FileItem", "DecodedItem", "DecodedBatch", "ImageFileDataset", "collate_decoded", "cpu_finish"]


@dataclass(frozen=True)
class FileItem:
    """A file to load: its path and the SHA-256 (32 bytes) found when hashing it."""

    path: str
    sha256: bytes


@dataclass
class DecodedItem:
    """One file after the worker: ``tensor`` ((3, crop, crop) float32, CPU path), or ``raw``
    bytes for the device decoder, or a skip (``skip_reason``, ``skip_detail``); ``record``
    is the image row (None when skipped); ``seconds`` the worker's wall time on it."""

    tensor: torch.Tensor | None
    record: ImageRecord | None
    path: str
    skip_reason: str | None = None
    skip_detail: str = ""
    seconds: float = 0.0
    raw: bytes | None = None  # a JPEG left for the device decoder (record from its header)


@dataclass
class DecodedBatch:
    """A batch of :class:`DecodedItem`: ``tensor`` ((N, 3, crop, crop) float32 of the CPU-decoded
    files, None if none) with their N ``records``, ``deferred`` items (raw JPEG bytes),
    ``skipped`` ``(path, reason, detail)``, and ``decode_seconds`` summed over the items."""

    tensor: torch.Tensor | None
    records: list[ImageRecord]
    skipped: list[tuple[str, str, str]]
    decode_seconds: float
    deferred: list[DecodedItem]

    def pin_memory(self) -> "DecodedBatch":  # DataLoader(pin_memory=True) calls it: page-locked for non_blocking copies
        if self.tensor is not None:
            self.tensor = self.tensor.pin_memory()
        return self


class ImageFileDataset(Dataset):
    """Decoded, preprocessed images for a DataLoader (one item = one file).

    Args:
        items: ``(path, sha256)`` pairs to read.
        transform: ``PIL.Image -> (3, H, W) float32 tensor`` (``ImageEmbedder.transform``).
        draft_size: JPEG DCT-scaling target (the preprocessing's resize), see
            :func:`pgvision.ingest.images.decode_image`.
        label_from: ``parent-dir`` (the folder name is the label) or ``none``.
        defer: ``bytes -> ImageHeader | None`` (:func:`pgvision.ingest.decode_gpu.deferrable`): files
            it accepts are returned undecoded (``raw``) for the device decoder.
    """

    def __init__(self, items: Sequence[FileItem], transform, draft_size: int | None, label_from: str,
                 defer: Callable | None = None) -> None:
        self.items = list(items)
        self.transform = transform
        self.draft_size = draft_size
        self.label_from = label_from
        self.defer = defer

    def _record(self, path: Path, digest: bytes, width: int, height: int, metadata: dict, size: int,
                hashes: PerceptualHash | None = None) -> ImageRecord:
        return ImageRecord(
            sha256=digest,
            uri=file_uri(path),
            label=name_text(path.parent.name) if self.label_from == "parent-dir" else None,
            width=width,
            height=height,
            metadata=dict(metadata, bytes=size),
            phash=hashes.phash if hashes else None,
            phash_crops=hashes.crops if hashes else None,
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> DecodedItem:
        item = self.items[index]
        start = time.perf_counter()
        path = Path(item.path)
        try:
            data = read_file(path)  # regular files only, size-limited, never blocks
        except FileSkipped as exc:
            return DecodedItem(None, None, item.path, exc.reason, exc.detail, time.perf_counter() - start)
        # The file may have changed since it was hashed: key it by the bytes decoded here.
        digest = item.sha256 if sha256_bytes(data) == item.sha256 else sha256_bytes(data)
        header = self.defer(data) if self.defer else None
        if header is not None:
            record = self._record(path, digest, header.width, header.height, header.metadata, len(data))
            return DecodedItem(None, record, item.path, seconds=time.perf_counter() - start, raw=data)
        try:
            decoded = decode_image(data, draft_size=self.draft_size)
            tensor = self.transform(decoded.image)
        except ImageSkipped as exc:
            return DecodedItem(None, None, item.path, exc.reason, exc.detail, time.perf_counter() - start)
        # The perceptual hash from the pixels just decoded (no second decode).
        hashes = perceptual_hash(decoded.image)
        record = self._record(path, digest, decoded.width, decoded.height, decoded.metadata, len(data), hashes)
        return DecodedItem(tensor, record, item.path, seconds=time.perf_counter() - start)


def collate_decoded(items: list[DecodedItem]) -> DecodedBatch:
    """DataLoader ``collate_fn``: stack the good tensors, keep deferred files and skips aside."""
    good = [it for it in items if it.tensor is not None]
    return DecodedBatch(
        tensor=torch.stack([it.tensor for it in good]) if good else None,
        records=[it.record for it in good],
        skipped=[(it.path, it.skip_reason, it.skip_detail) for it in items if it.tensor is None and it.raw is None],
        decode_seconds=sum(it.seconds for it in items),
        deferred=[it for it in items if it.raw is not None],
    )


def cpu_finish(batch: DecodedBatch, transform, draft_size):
    """The Pillow path's batch needs nothing more: ``(tensor, records, skipped)``."""
    return batch.tensor, batch.records, []
