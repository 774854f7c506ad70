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
from typing import Iterable

import numpy as np
import psycopg
from tqdm import tqdm

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
from pgvision.index import build_progress, ddl, recall_target
from pgvision.ingest.files import FileSkipped, NoFilesFound, name_text
from pgvision.ingest.images import (
    IMAGE_EXTENSIONS,
    ImageSkipped,
    find_images,
    sha256_file,
)

IDENTITY_FROM = ("parent-dir", "none")


@dataclass
class FaceLoadSummary:
    """What a face load did.

    Attributes:
        model, model_id, detector: what was loaded with.
        found: photo files found; already_done: skipped because already loaded.
        photos: photos stored by this run; faces: faces found in them; embeddings: written.
        enrolled: faces given an identity.
        skipped: ``{reason: photos}``: ``no-face`` and the decode reasons.
        too_small: faces found but too small to align (not stored).
        skipped_files: ``[(path, reason)]``.
        seconds: per stage (hash, decode, detect, align, embed, copy, index, total).
        recall: the search setting re-chosen for the model's target recall after this
            load (:func:`pgvision.index.recall_target.recheck`), one line; None when not re-chosen.
        index: name of the model's ANN index; index_mb: its size in MB (None without).
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
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)
    index: str | None = None
    recall: str | None = None
    index_mb: float | None = None

    def format(self) -> str:
        """E.g. ``loaded 798 photos, 835 faces (835 new embeddings), already done 0, skipped 2: 2 no-face``."""
        skipped = sum(self.skipped.values())
        text = (f"loaded {self.photos} photos, {self.faces} faces ({self.embeddings} new embeddings), "
                f"enrolled {self.enrolled}, already done {self.already_done}, skipped {skipped}")
        if skipped:
            text += ": " + ", ".join(f"{n} {r}" for r, n in sorted(self.skipped.items()))
        if self.too_small:
            text += f"; {self.too_small} faces too small to align"
        s = self.seconds
        text += (f"\nmodel {self.model} (model_id {self.model_id}), detector {self.detector}; {self.found} files; seconds: "
                 + ", ".join(f"{k} {s[k]:.1f}" for k in ("hash", "decode", "detect", "align", "embed", "copy", "index", "total") if k in s))
        if self.recall:
            text += "\n" + self.recall
        if self.index_mb is not None:
            text += f"; index {self.index_mb:.1f} MB"
        return text


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

    Returns:
        :class:`FaceLoadSummary`.

    Raises:
        FileNotFoundError: a path does not exist.
        pgvision.files.NoFilesFound: no image file under ``paths``; nothing is written.
        ValueError: unknown ``identity_from``.
        pgvision.faces.store.BadIdentityName: ``identity`` is empty or too long (before
            anything is read or written).
        pgvision.errors.ModelMismatch: the model name is registered with other weights.
    """
    if identity_from not in IDENTITY_FROM:
        raise ValueError(f"identity-from must be one of {', '.join(IDENTITY_FROM)}, got {identity_from!r}")
    if identity is not None:
        check_identity_name(identity)
    model, detector = pipeline.model, pipeline.detector.detector
    t_total = time.perf_counter()
    skipped_early: list[tuple[str, str, str]] = []
    files = find_images(paths, on_skip=lambda *skip: skipped_early.append(skip))
    if not files:  # before the model is registered: an empty folder leaves nothing behind
        raise NoFilesFound.under(paths, IMAGE_EXTENSIONS, Counter(reason for _, reason, _ in skipped_early))
    model_id = register_face_model(conn, model)
    summary = FaceLoadSummary(model.name, model_id, detector, found=len(files))
    for path, reason, _ in skipped_early:
        summary.skipped[reason] += 1
        summary.skipped_files.append((path, reason))

    def name_of(path: Path) -> str | None:
        # A folder name that is not UTF-8 becomes text losslessly enough to be stable (files.name_text).
        if identity is not None:  # "" too: refused above, never taken for "no identity"
            return identity
        return name_text(path.parent.name) if identity_from == "parent-dir" else None

    t = time.perf_counter()
    hashed: list[tuple[Path, bytes]] = []
    for path in files:
        if identity is None and identity_from == "parent-dir":
            try:  # a folder name no identity can take: its photos are skipped, the rest loads
                check_identity_name(name_of(path))
            except BadIdentityName as exc:
                summary.skipped["identity-name"] += 1
                summary.skipped_files.append((str(path), f"identity-name: the folder's name: {exc}"))
                continue
        try:
            hashed.append((path, sha256_file(path)))
        except FileSkipped as exc:
            summary.skipped[exc.reason] += 1
            summary.skipped_files.append((str(path), f"{exc.reason}: {exc.detail}"))
    summary.seconds["hash"] += time.perf_counter() - t
    done = done_sha256(conn, model_id, detector, [d for _, d in hashed])
    pending, seen = [], set()
    for path, digest in hashed:
        if digest in done:
            summary.already_done += 1
            if name_of(path):
                summary.enrolled += enroll_stored(conn, detector, [digest], name_of(path), reassign)
        elif digest not in seen:
            seen.add(digest)
            pending.append(path)

    batch: list[tuple[Photo, list[Face], np.ndarray, str | None]] = []

    def flush() -> None:
        if not batch:
            return
        t0 = time.perf_counter()
        chips = [c for _, _, c, _ in batch if len(c)]
        emb = model.embed(np.concatenate(chips)) if chips else np.zeros((0, model.dims), np.float32)
        summary.seconds["embed"] += time.perf_counter() - t0
        photos, start = [], 0
        for photo, faces, c, name in batch:
            photos.append(ScannedPhoto(photo.record, faces, emb[start : start + len(faces)], name))
            start += len(faces)
        t0 = time.perf_counter()
        counts = store_photos(conn, model_id, model.dims, detector, photos, reassign)
        summary.seconds["copy"] += time.perf_counter() - t0
        summary.photos += len(batch)
        summary.faces += sum(len(f) for _, f, _, _ in batch)
        summary.embeddings += counts.embeddings
        summary.enrolled += counts.enrolled
        batch.clear()

    for path in tqdm(pending, desc=f"faces {model.name}", unit="photo", disable=not progress):
        t0 = time.perf_counter()
        try:
            photo = read_photo(path)
        except ImageSkipped as exc:
            summary.skipped[exc.reason] += 1
            summary.skipped_files.append((str(path), exc.reason))
            continue
        finally:
            summary.seconds["decode"] += time.perf_counter() - t0
        faces, chips, too_small = pipeline.scan(photo.pixels, summary.seconds)
        summary.too_small += too_small
        if not faces:
            summary.skipped["no-face"] += 1
            summary.skipped_files.append((str(path), "no-face"))
        batch.append((photo, faces, chips, name_of(path)))
        if len(batch) >= batch_size:
            flush()
    flush()
    if summary.photos or summary.enrolled:
        build_progress.analyze(conn, "images", "faces", "face_scans", "identities", "face_embeddings")
    if build_index:
        t0 = time.perf_counter()
        summary.index = ddl.ensure_index(conn, model_id, progress=progress)
        choice = recall_target.recheck(conn, model_id)
        summary.recall = recall_target.describe(choice) if choice else None
        summary.seconds["index"] += time.perf_counter() - t0
        summary.index_mb = build_progress.index_mb(conn, summary.index)
    summary.seconds["total"] = time.perf_counter() - t_total
    return summary
