"""The loader's pipeline: image files -> tensors -> embeddings -> binary COPY, per batch.

Stages (DESIGN.md, "The data flow"):

1. **hash**: every file found is read once and keyed by the SHA-256 of its bytes (a thread
   pool; hashing runs at disk speed). Digests already embedded for this model
   (``pg_copy.loaded_sha256``) are dropped here, so a rerun never decodes or embeds them
   again; a second file with the same bytes is counted as a duplicate.
2. **decode/preprocess**: ``torch.utils.data.DataLoader`` workers (:mod:`pgvision.ingest.decoding`) read, decode
   (:func:`pgvision.ingest.images.decode_image`: upright RGB, bad files become skip reasons) and
   transform (:func:`pgvision.models.embed.build_transform`) the rest, ``batch_size`` at a time.
   With ``decode="gpu"`` (:mod:`pgvision.ingest.decode_gpu`) the workers only read and check the
   JPEGs' headers, and the main process decodes and resizes them on the model's device.
3. **embed**: the main process starts the model on each batch under ``torch.inference_mode``
   (``channels_last``; :meth:`pgvision.models.embed.ImageEmbedder.embed_async`: on a GPU it does
   not wait for the result), L2-normalising for cosine models.
4. **copy**: a writer thread (:class:`pgvision.ingest.writer.BatchWriter`, bounded queue) stores
   each batch with ``pg_copy.copy_image_embeddings`` in one transaction (advisory lock per
   model, upsert of images, binary COPY of embeddings) while the next batch is decoded and
   embedded. A batch lands whole or not at all: a killed loader loses nothing it
   committed, and two loaders on the same folder never store a row twice.
5. **index**: ``ddl.ensure_index`` builds the model's ANN index once data is there
   (pgvector: build after the bulk load).

Timings: ``startup`` (the caller's model loading, passed in, plus worker start and warm-up),
``hash``, ``decode`` (seconds summed over workers: CPU time, which overlaps the main process
when ``workers > 0``), ``device_decode`` (only with the device decoder: the main process
decoding and resizing JPEGs), ``wait`` (main process waiting for decoded batches), ``embed``
(model time; on CUDA measured with CUDA events), ``copy`` (in the writer thread: overlaps
the rest), ``index`` and ``total`` (wall clock, ``startup`` included), all in seconds.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import psycopg
from torch.utils.data import DataLoader
from tqdm import tqdm

from pgvision import registry
from pgvision.after_load import LoadSummary, connection_lost_guard, finish_load
from pgvision.errors import InvalidValue, ProbeUnusable
from pgvision.ingest import pg_copy, row_limits
from pgvision.ingest.decode_gpu import TensorDecoder, choose_decoder, deferrable
from pgvision.ingest.decoding import (
    FileItem,
    ImageFileDataset,
    collate_decoded,
    cpu_finish,
)
from pgvision.ingest.files import FileSkipped, NoFilesFound, OnSkip, read_file
from pgvision.ingest.images import (
    IMAGE_EXTENSIONS,
    ImageSkipped,
    decode_image,
    find_images,
    sha256_file,
)
from pgvision.ingest.writer import BatchWriter
from pgvision.models.embed import ImageEmbedder
from pgvision.tenancy.collection import DEFAULT_COLLECTION, check_collection_name, use_collection
from pgvision.text import display

LABEL_FROM = ("parent-dir", "none")

#: How many digests one ``loaded_sha256`` query checks.
_LOOKUP_CHUNK = 5000


def hash_files(paths: Sequence[Path], threads: int = 4) -> list[tuple[Path, bytes | None, FileSkipped | str]]:
    """SHA-256 of each file, in order: ``(path, digest, "")`` or ``(path, None, FileSkipped)``."""

    def one(path: Path):
        try:
            return path, sha256_file(path), ""
        except FileSkipped as exc:
            return path, None, exc

    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        return list(pool.map(one, paths))


def load_images(
    conn: psycopg.Connection,
    paths: Iterable[str | os.PathLike],
    embedder: ImageEmbedder,
    *,
    batch_size: int = 32,
    workers: int = 1,
    label_from: str = "parent-dir",
    limit: int | None = None,
    build_index: bool = True,
    progress: bool = True,
    on_skip: Callable[[str, str, str], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    decode: str | TensorDecoder = "auto",
    startup_seconds: float = 0.0,
    collection: str = DEFAULT_COLLECTION,
) -> LoadSummary:
    """Load image files into ``pgvision.images`` / ``image_embeddings``; idempotent.

    Args:
        conn: connection from :func:`pgvision.server.connection.connect` in **autocommit** mode (each
            batch commits on its own).
        paths: files and folders (walked recursively, see :func:`pgvision.ingest.images.find_images`).
        embedder: the model (:func:`pgvision.models.load_image_model`).
        batch_size: images per model call and per transaction (default 32).
        workers: DataLoader worker processes that decode (0: decode in this process).
        label_from: ``parent-dir`` or ``none``.
        limit: only the first ``limit`` files found (sorted), loaded or not.
        build_index: build the model's ANN index at the end if it is missing.
        progress: show a tqdm progress bar (images/s, ETA) on stderr.
        on_skip: called with ``(path, reason, detail)`` for each skipped file.
        on_batch: called with the number of embeddings this run has committed, after each
            batch, from the writer thread (:class:`pgvision.ingest.writer.BatchWriter`).
        decode: ``auto`` (the CPU path, on every device: see
            :func:`pgvision.ingest.decode_gpu.choose_decoder`), ``cpu`` (Pillow in the
            workers), ``gpu`` (:mod:`pgvision.ingest.decode_gpu`), or a
            :class:`pgvision.ingest.decode_gpu.TensorDecoder` (tests: the device path on the CPU).
        startup_seconds: seconds the caller spent before this call (imports, model
            loading), added to ``seconds["startup"]`` and ``seconds["total"]``.
        collection: the collection (tenant) the images go into, created when absent and the
            role may (:func:`pgvision.tenancy.collection.use_collection`); the same file in
            two collections is two images.

    Returns:
        :class:`LoadSummary`.

    Raises:
        pgvision.errors.ModelMismatch: the model name is registered with other dims, metric
            or weights; nothing is written.
        pgvision.errors.DatabaseUnreachable: the connection was lost mid-load; what was
            committed stays, a rerun loads the rest.
        FileNotFoundError: a path does not exist.
        pgvision.files.NoFilesFound: no image file under ``paths``; nothing is written.
        pgvision.ingest.decode_gpu.DecodeUnavailable: ``decode="gpu"`` without a CUDA model device.
        pgvision.ingest.decode_gpu.DeviceFailure: a sticky CUDA error while decoding; what was
            committed stays (an out-of-memory instead stops device decoding only: see
            ``LoadSummary.device_failure``).
        pgvision.errors.InvalidValue: ``label_from``, ``batch_size``, ``workers`` or ``decode`` out of range.
        pgvision.tenancy.collection.CollectionError: ``collection`` is not a valid name, or
            not granted to this role; nothing is written.
    """
    _check_options(label_from, batch_size, workers)
    check_collection_name(collection)
    t_start = time.perf_counter()
    spec = embedder.spec
    decoder = choose_decoder(decode, embedder.device, spec.preprocessing)
    summary = LoadSummary(model=spec.name, model_id=0)
    summary.seconds = {"startup": startup_seconds, "hash": 0.0, "decode": 0.0, "wait": 0.0, "embed": 0.0,
                       "copy": 0.0, "index": 0.0}
    if decoder is not None:
        summary.seconds["device_decode"] = 0.0

    def skip(path: str, reason: str, detail: str) -> None:
        summary.skip(path, reason, detail)
        if on_skip:
            on_skip(path, reason, detail)

    t = time.perf_counter()
    files = find_images(paths, limit=limit, on_skip=skip)
    summary.found = len(files)
    if not files:  # before the model is registered: an empty folder leaves nothing behind
        raise NoFilesFound.under(paths, IMAGE_EXTENSIONS, summary.skipped)
    use_collection(conn, collection)
    summary.model_id = registry.register_model(conn, spec)
    todo = _hash_stage(conn, summary, files, skip)
    summary.seconds["hash"] = time.perf_counter() - t
    writer = BatchWriter(conn, summary.model_id, spec.dims, total_files=len(todo), on_batch=on_batch)
    _decode_embed_copy(todo, embedder, decoder, writer, summary, skip, batch_size=batch_size, workers=workers,
                       label_from=label_from, progress=progress)
    finish_load(conn, summary, summary.model_id, tables=("images", "image_embeddings"), changed=summary.loaded > 0,
                build_index=build_index, progress=progress, loaded=summary.loaded)
    summary.seconds["total"] = time.perf_counter() - t_start + startup_seconds
    return summary


def _check_options(label_from: str, batch_size: int, workers: int) -> None:
    if label_from not in LABEL_FROM:
        raise InvalidValue(f"--label-from must be parent-dir or none, got {label_from!r}")
    if batch_size < 1:
        raise InvalidValue(f"--batch-size must be at least 1, got {batch_size}")
    if workers < 0:
        raise InvalidValue(f"--workers must be 0 or more, got {workers}")


def _hash_stage(conn: psycopg.Connection, summary: LoadSummary, files: Sequence[Path], skip: OnSkip) -> list[FileItem]:
    """Stage 1: hash every file; drop what this model has already and in-run duplicates."""
    todo: list[FileItem] = []
    seen: set[bytes] = set()
    for path, digest, error in hash_files(files):
        if digest is None:
            skip(str(path), error.reason, error.detail)
        elif digest in seen:
            summary.duplicates += 1
        else:
            seen.add(digest)
            todo.append(FileItem(str(path), digest))
    present: set[bytes] = set()
    digests = [it.sha256 for it in todo]
    with connection_lost_guard(lambda: 0, lambda: len(todo)):
        for i in range(0, len(digests), _LOOKUP_CHUNK):
            present |= pg_copy.loaded_sha256(conn, summary.model_id, digests[i : i + _LOOKUP_CHUNK])
    summary.already_present = len(present)
    return [it for it in todo if it.sha256 not in present]


def _decode_embed_copy(todo: list[FileItem], embedder: ImageEmbedder, decoder: TensorDecoder | None,
                       writer: BatchWriter, summary: LoadSummary, skip: OnSkip, *, batch_size: int, workers: int,
                       label_from: str, progress: bool) -> None:
    """Stages 2-4: decode in workers (or on the device), embed here, copy in the writer thread."""
    seconds = summary.seconds
    draft = embedder.spec.preprocessing.get("resize")
    dataset = ImageFileDataset(todo, embedder.transform, draft, label_from, defer=deferrable if decoder else None)
    finish = decoder.finish if decoder else cpu_finish
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_decoded,
        pin_memory=embedder.device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
    bar = tqdm(total=len(todo), unit="img", disable=not progress, desc=f"loading ({embedder.spec.name})",
               smoothing=0.1, leave=False)  # cleared before the summary line
    try:
        t = time.perf_counter()
        batches = iter(loader)  # workers start decoding while the model and decoder warm up
        if todo:
            embedder.warm_up(batch_size)
            if decoder:
                decoder.warm_up()
        seconds["startup"] += time.perf_counter() - t
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            seconds["wait"] += time.perf_counter() - t
            seconds["decode"] += batch.decode_seconds
            t = time.perf_counter()
            tensor, records, refused = finish(batch, embedder.transform, draft)
            if decoder:
                seconds["device_decode"] += time.perf_counter() - t
            for path, reason, detail in batch.skipped + refused:
                skip(path, reason, detail)
            pending = embedder.embed_async(tensor) if tensor is not None else None
            keep, rejected = row_limits.split_oversized(records)
            for i, reason in rejected:
                skip(records[i].uri, "too-large", reason)
            files = len(batch.records) + len(batch.deferred) + len(batch.skipped)
            writer.submit([records[i] for i in keep], pending, files=files, rows=keep if rejected else None)
            bar.update(files)
        writer.close()
    except BaseException:
        writer.abandon()
        raise
    finally:
        bar.close()
    summary.loaded = writer.loaded
    if decoder is not None and decoder.failure is not None:
        summary.device_failure = (f"GPU decoding stopped after 1 device failure ({decoder.failure}); "
                                  f"{decoder.cpu_fallback} JPEGs decoded on the CPU instead; pass --decode cpu")
    summary.already_present += writer.already_present
    seconds["embed"], seconds["copy"] = writer.seconds["embed"], writer.seconds["copy"]


def embed_files(embedder: ImageEmbedder, paths: Sequence[str | os.PathLike]) -> np.ndarray:
    """Embed a few image files in this process (the search command's probe).

    Returns:
        ``(len(paths), D)`` float32 array, as stored (normalised for cosine models).

    Raises:
        pgvision.images.ImageSkipped: a file cannot be used (its reason; the message names
            the file): not a regular file, over the size limit, not an image, over the pixel
            or aspect-ratio limit, ...
    """
    images = []
    for p in paths:
        try:
            decoded = decode_image(read_file(p), draft_size=embedder.spec.preprocessing.get("resize"))
        except ImageSkipped as exc:
            raise exc.with_path(p) from None
        images.append(decoded.image)
    return embedder.embed_images(images)


def embed_probe(embedder: ImageEmbedder, path: str | os.PathLike) -> np.ndarray:
    """Embed the image a search starts from: ``(D,)`` float32, as stored.

    Raises:
        pgvision.errors.ProbeUnusable: the file cannot be used (its reason and detail).
    """
    try:
        return embed_files(embedder, [path])[0]
    except ImageSkipped as exc:
        detail = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
        raise ProbeUnusable(f"cannot use {display(path)} as a probe: {detail}") from None
