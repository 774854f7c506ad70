"""The face loading pipeline: files -> detect -> align -> embed -> store (``pgvision faces load``).

Stages and where they live: :mod:`pgvision.ingest.images` (find, hash, decode, shared with the
image loader), :mod:`~pgvision.faces.detect`, :mod:`~pgvision.faces.align`,
:mod:`~pgvision.faces.embed`, :mod:`~pgvision.faces.store`. Files already scanned with the
same detector and embedded with the same model are skipped after hashing (a rerun is cheap
and loads only the rest). Photos that cannot be used are counted by reason: the loader's
decode reasons (``truncated``, ``not-an-image``, ...), plus ``no-face`` (recorded in
``pgvision.face_scans`` with 0 faces) and faces ``too-small`` to align (not stored).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import psycopg
from tqdm import tqdm

from pgvision.after_load import LoadReport, connection_lost_guard, finish_load
from pgvision.errors import InvalidValue
from pgvision.faces.detect import Face
from pgvision.faces.pipeline import FacePipeline, Photo, read_photo
from pgvision.faces.store import (
    BadIdentityName,
    ScannedPhoto,
    check_identity_name,
    done_sha256,
    enroll_stored,
    register_face_model,
    store_photos,
)
from pgvision.ingest.files import FileSkipped, NoFilesFound
from pgvision.ingest.images import (
    IMAGE_EXTENSIONS,
    ImageSkipped,
    find_images,
    sha256_file,
)
from pgvision.tenancy.collection import DEFAULT_COLLECTION, check_collection_name, use_collection
from pgvision.text import name_text

IDENTITY_FROM = ("parent-dir", "none")


@dataclass
class FaceLoadSummary(LoadReport):
    """What a face load did.

    Attributes:
        model, model_id, detector: what was loaded with.
        found: photo files found; already_done: skipped because already loaded.
        photos: photos stored by this run; faces: faces found in them; embeddings: written.
        enrolled: faces given an identity.
        too_small: faces found but too small to align (not stored).

    Skips (``no-face``, ``identity-name`` and the decode reasons), seconds per stage (hash,
    decode, detect, align, embed, copy, index, total), index and recall are
    :class:`pgvision.after_load.LoadReport`'s.
    """

    model: str
    model_id: int
    detector: str
    found: int = 0
    already_done: int = 0
    photos: int = 0
    faces: int = 0
    embeddings: int = 0
    enrolled: int = 0
    too_small: int = 0
    seconds: Counter = field(default_factory=Counter, kw_only=True)

    #: Timed stages, in the order the summary prints them.
    STAGES = ("hash", "decode", "detect", "align", "embed", "copy", "index", "total")

    def format(self) -> str:
        """E.g. ``loaded 798 photos, 835 faces (835 new embeddings), already done 0, skipped 2: 2 no-face``."""
        text = (f"loaded {self.photos} photos, {self.faces} faces ({self.embeddings} new embeddings), "
                f"enrolled {self.enrolled}, already done {self.already_done}, " + self.skipped_text())
        if self.too_small:
            text += f"; {self.too_small} faces too small to align"
        text += (f"\nmodel {self.model} (model_id {self.model_id}), detector {self.detector}; {self.found} files; "
                 + self.seconds_text(self.STAGES))
        return text + self.index_text()


def load_faces(
    conn: psycopg.Connection,
    paths: Iterable[str | Path],
    pipeline: FacePipeline,
    identity_from: str = "none",
    identity: str | None = None,
    batch_size: int = 32,
    progress: bool = True,
    build_index: bool = True,
    reassign: bool = False,
    collection: str = DEFAULT_COLLECTION,
) -> FaceLoadSummary:
    """Detect, align, embed and store every face of the photos under ``paths``.

    Args:
        conn: autocommit psycopg connection (each batch commits on its own).
        paths: files and folders (walked recursively for image extensions).
        pipeline: the detector and face model.
        identity_from: ``parent-dir`` enrolls the largest face of each photo under the name
            of its folder (a folder name over 200 characters skips its photos as
            ``identity-name``, the others load); ``none`` stores faces without identity.
        identity: enroll the largest face of each photo under this name (``pgvision enroll``);
            overrides ``identity_from``.
        batch_size: photos per transaction.
        progress: show a tqdm bar.
        build_index: build the model's ANN index afterwards if absent.
        reassign: enrolling may move a face out of another identity's gallery; without it
            such a face stops the load with :class:`pgvision.errors.AlreadyEnrolled`
            (batches committed before stay).
        collection: the collection (tenant) photos, faces and identities go into, created
            when absent and the role may (:func:`pgvision.tenancy.collection.use_collection`);
            an identity name is unique within its collection.

    Returns:
        :class:`FaceLoadSummary`.

    Raises:
        FileNotFoundError: a path does not exist.
        pgvision.files.NoFilesFound: no image file under ``paths``; nothing is written.
        pgvision.errors.InvalidValue: unknown ``identity_from``.
        pgvision.errors.DatabaseUnreachable: the connection was lost; committed batches stay,
            a rerun loads the rest.
        pgvision.faces.store.BadIdentityName: ``identity`` is empty or too long (before
            anything is read or written).
        pgvision.errors.ModelMismatch: the model name is registered with other weights.
        pgvision.tenancy.collection.CollectionError: ``collection`` is not a valid name, or
            not granted to this role; nothing is written.
    """
    if identity_from not in IDENTITY_FROM:
        raise InvalidValue(f"identity-from must be one of {', '.join(IDENTITY_FROM)}, got {identity_from!r}")
    if identity is not None:
        check_identity_name(identity)
    check_collection_name(collection)
    model, detector = pipeline.model, pipeline.detector.detector
    t_total = time.perf_counter()
    summary = FaceLoadSummary(model.name, 0, detector)
    files = find_images(paths, on_skip=summary.skip)
    if not files:  # before the model is registered: an empty folder leaves nothing behind
        raise NoFilesFound.under(paths, IMAGE_EXTENSIONS, summary.skipped)
    summary.found = len(files)
    name_of = _identity_of(identity, identity_from)
    pending: list[Path] = []
    with connection_lost_guard(lambda: summary.photos, lambda: len(pending or files) - summary.photos):
        use_collection(conn, collection)
        summary.model_id = register_face_model(conn, model)
        hashed = _hash_stage(
            files, summary, name_of, check_folder_names=identity is None and identity_from == "parent-dir"
        )
        pending = _drop_done(conn, summary, hashed, name_of, reassign)
        _scan_and_store(conn, pipeline, pending, summary, name_of, batch_size=batch_size, reassign=reassign,
                        progress=progress)
    finish_load(
        conn,
        summary,
        summary.model_id,
        tables=("images", "faces", "face_scans", "identities", "face_embeddings"),
        changed=bool(summary.photos or summary.enrolled),
        build_index=build_index,
        progress=progress,
        loaded=summary.photos,
    )
    summary.seconds["total"] = time.perf_counter() - t_total
    return summary


def _identity_of(identity: str | None, identity_from: str) -> Callable[[Path], str | None]:
    """The identity a photo's largest face is enrolled under: ``identity``, its folder's name, or None."""

    def name_of(path: Path) -> str | None:
        # A folder name that is not UTF-8 becomes text losslessly enough to be stable (text.name_text).
        if identity is not None:  # "" too: refused before, never taken for "no identity"
            return identity
        return name_text(path.parent.name) if identity_from == "parent-dir" else None

    return name_of


def _hash_stage(files: list[Path], summary: FaceLoadSummary, name_of: Callable[[Path], str | None], *,
                check_folder_names: bool) -> list[tuple[Path, bytes]]:
    """SHA-256 of each usable file; a folder name no identity can take skips its photos."""
    t = time.perf_counter()
    hashed: list[tuple[Path, bytes]] = []
    for path in files:
        if check_folder_names:
            try:  # a folder name no identity can take: its photos are skipped, the rest loads
                check_identity_name(name_of(path))
            except BadIdentityName as exc:
                summary.skip(str(path), "identity-name", f"the folder's name: {exc}")
                continue
        try:
            hashed.append((path, sha256_file(path)))
        except FileSkipped as exc:
            summary.skip(str(path), exc.reason, exc.detail)
    summary.seconds["hash"] += time.perf_counter() - t
    return hashed


def _drop_done(conn: psycopg.Connection, summary: FaceLoadSummary, hashed: list[tuple[Path, bytes]],
               name_of: Callable[[Path], str | None], reassign: bool) -> list[Path]:
    """Photos still to scan: not scanned with this detector and model yet, first of their bytes.

    A photo already done is enrolled again under its identity when it has one.
    """
    done = done_sha256(conn, summary.model_id, summary.detector, [d for _, d in hashed])
    pending, seen = [], set()
    for path, digest in hashed:
        if digest in done:
            summary.already_done += 1
            if name_of(path):
                summary.enrolled += enroll_stored(conn, summary.detector, [digest], name_of(path), reassign)
        elif digest not in seen:
            seen.add(digest)
            pending.append(path)
    return pending


_Scanned = tuple[Photo, list[Face], np.ndarray, "str | None"]


def _scan_and_store(conn: psycopg.Connection, pipeline: FacePipeline, pending: list[Path], summary: FaceLoadSummary,
                    name_of: Callable[[Path], str | None], *, batch_size: int, reassign: bool, progress: bool) -> None:
    """Decode, detect and align each photo; embed and store them ``batch_size`` at a time."""
    batch: list[_Scanned] = []
    for path in tqdm(pending, desc=f"faces {pipeline.model.name}", unit="photo", disable=not progress,
                     leave=False):  # cleared before the summary line
        t0 = time.perf_counter()
        try:
            photo = read_photo(path)
        except ImageSkipped as exc:
            summary.skip(str(path), exc.reason, exc.detail)
            continue
        finally:
            summary.seconds["decode"] += time.perf_counter() - t0
        faces, chips, too_small = pipeline.scan(photo.pixels, summary.seconds)
        summary.too_small += too_small
        if not faces:
            summary.skip(str(path), "no-face")
        batch.append((photo, faces, chips, name_of(path)))
        if len(batch) >= batch_size:
            _store_batch(conn, pipeline, batch, summary, reassign)
            batch.clear()
    if batch:
        _store_batch(conn, pipeline, batch, summary, reassign)


def _store_batch(conn: psycopg.Connection, pipeline: FacePipeline, batch: list[_Scanned], summary: FaceLoadSummary,
                 reassign: bool) -> None:
    """Embed the batch's face chips in one model call and store its photos in one transaction."""
    model = pipeline.model
    t0 = time.perf_counter()
    chips = [c for _, _, c, _ in batch if len(c)]
    emb = model.embed(np.concatenate(chips)) if chips else np.zeros((0, model.dims), np.float32)
    summary.seconds["embed"] += time.perf_counter() - t0
    photos, start = [], 0
    for photo, faces, _, name in batch:
        photos.append(ScannedPhoto(photo.record, faces, emb[start : start + len(faces)], name))
        start += len(faces)
    t0 = time.perf_counter()
    counts = store_photos(conn, summary.model_id, model.dims, summary.detector, photos, reassign)
    summary.seconds["copy"] += time.perf_counter() - t0
    summary.photos += len(batch)
    summary.faces += sum(len(f) for _, f, _, _ in batch)
    summary.embeddings += counts.embeddings
    summary.enrolled += counts.enrolled
