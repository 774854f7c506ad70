"""Vectors computed elsewhere: read them for ``pgvision load-vectors``.

Two inputs:

* **NumPy** ``FILE.npy``: a ``(N, D)`` float array (``np.save``), with optional files beside
  it, one entry per row: ``FILE.ids.txt`` (or ``.ids.npy``), ``FILE.labels.txt`` (or
  ``.labels.npy``), ``FILE.uris.txt``. ``FILE`` is the name without ``.npy``; text files
  hold one value per line (UTF-8), an empty line meaning none (labels).
* **AnalyticDB tutorial text** (Alibaba Cloud, "Build an image-based search system" with
  AnalyticDB for PostgreSQL): one image a line, ``id|class|{v1,v2,...}``, fields separated
  by ``|``, the vector as a PostgreSQL array literal. Users of that tutorial keep their
  SqueezeNet features.

Each row becomes a ``pgvision.images`` row keyed, like a loaded image, by a SHA-256: of the
file's bytes when the row's uri is a readable local file (so the same photo loaded later
with ``pgvision load --model ...`` is the same image), otherwise of the text
``pgvision-external-id:<source file name>:<id>`` (stable across reruns: loading the same
file twice adds nothing). The external id is kept in ``metadata.external_id``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgvision.errors import PgvisionError
from pgvision.files import FileSkipped, check_file, display, file_uri, sha256_file
from pgvision.pg_copy import ImageRecord

FORMATS = ("auto", "npy", "analyticdb")


class VectorFileError(PgvisionError):
    """A vectors file (or a file beside it) cannot be read; the message names file and line."""


@dataclass
class VectorSet:
    """Vectors and their per-row data.

    Attributes:
        vectors: ``(N, D)`` float32.
        ids: N external ids (strings); default ``0..N-1``.
        labels: N labels or None.
        uris: N uris; default ``<file>#<id>``.
        source: the file read.
    """

    vectors: np.ndarray
    ids: list[str]
    labels: list[str | None]
    uris: list[str]
    source: Path

    def records(self) -> list[ImageRecord]:
        """One :class:`pgvision.pg_copy.ImageRecord` per row (see the module docstring for keys)."""
        out = []
        for i, (ext_id, label, uri) in enumerate(zip(self.ids, self.labels, self.uris)):
            out.append(
                ImageRecord(
                    sha256=_row_digest(self.source, ext_id, uri),
                    uri=uri,
                    label=label,
                    metadata={"external_id": ext_id, "vectors_file": self.source.name},
                )
            )
        return out


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; all-zero rows stay zero.

    Args:
        vectors: ``(N, D)`` float array.

    Returns:
        ``(N, D)`` float32 array.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


def _row_digest(source: Path, ext_id: str, uri: str) -> bytes:
    path = uri[len("file://") :] if uri.startswith("file://") else uri
    if "#" not in uri and os.path.isfile(path):
        try:
            return sha256_file(path)
        except FileSkipped:
            pass
    return hashlib.sha256(f"pgvision-external-id:{source.name}:{ext_id}".encode()).digest()


def read_vectors(path: str | os.PathLike, fmt: str = "auto") -> VectorSet:
    """Read a vectors file.

    Args:
        path: ``.npy`` file, or AnalyticDB text (any other extension, e.g. ``.txt``).
        fmt: ``auto`` (by extension), ``npy`` or ``analyticdb``.

    Raises:
        VectorFileError: unreadable file, wrong shape, non-numeric or non-finite values,
            ragged rows, side files of another length; the message names file and line.
    """
    path = Path(path)
    try:
        check_file(path, max_bytes=sys.maxsize)  # a regular file (a FIFO would block np.load); any size
    except FileSkipped as exc:
        raise VectorFileError(f"cannot read the vectors file {display(path)}: {exc.reason}: {exc.detail}") from None
    if fmt not in FORMATS:
        raise VectorFileError(f"unknown --format {fmt!r}; use auto, npy or analyticdb")
    if fmt == "npy" or (fmt == "auto" and path.suffix.lower() == ".npy"):
        vs = read_npy(path)
    else:
        vs = read_analyticdb_text(path)
    bad = ~np.isfinite(vs.vectors).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise VectorFileError(f"{display(path)}: row {i} (id {display(vs.ids[i])}) has NaN or infinite values; pgvector stores finite floats only")
    return vs


def _side_file(path: Path, what: str, n: int) -> list[str] | None:
    stem = path.with_suffix("")
    txt, npy = Path(f"{stem}.{what}.txt"), Path(f"{stem}.{what}.npy")
    if txt.is_file():
        try:
            values = txt.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise VectorFileError(f"{display(txt)} is not UTF-8 text (byte {exc.start}): save it as UTF-8") from None
        side = txt
    elif npy.is_file():
        values = [str(v) for v in np.load(npy, allow_pickle=False).tolist()]
        side = npy
    else:
        return None
    if len(values) != n:
        raise VectorFileError(f"{display(side)} has {len(values)} entries but {display(path)} has {n} vectors: one entry per row is needed")
    return values


def read_npy(path: str | os.PathLike) -> VectorSet:
    """Read ``FILE.npy`` and its optional ``FILE.ids`` / ``.labels`` / ``.uris`` files.

    Raises:
        VectorFileError: not a 2-D numeric array, or side files of another length.
    """
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise VectorFileError(f"{display(path)} is not a NumPy .npy array ({exc}); save it with numpy.save") from None
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise VectorFileError(f"{display(path)} holds a {arr.ndim}-d {arr.dtype} array; expected (N, D) floats")
    n = arr.shape[0]
    ids = _side_file(path, "ids", n) or [str(i) for i in range(n)]
    labels = _side_file(path, "labels", n)
    uris = _side_file(path, "uris", n)
    return VectorSet(
        vectors=np.ascontiguousarray(arr, dtype=np.float32),
        ids=ids,
        labels=[lab or None for lab in labels] if labels else [None] * n,
        uris=uris or [f"{file_uri(path.resolve())}#{i}" for i in ids],
        source=path,
    )


def read_analyticdb_text(path: str | os.PathLike) -> VectorSet:
    """Read the AnalyticDB tutorial's ``id|class|{v1,v2,...}`` lines (blank lines ignored).

    Raises:
        VectorFileError: a line without three ``|`` fields, a vector that is not ``{...}``
            of numbers, or rows of different lengths (file and line number named).
    """
    path = Path(path)
    ids: list[str] = []
    labels: list[str | None] = []
    rows: list[np.ndarray] = []
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for lineno, line in enumerate(fh, 1):
            if any(0xDC80 <= ord(c) <= 0xDCFF for c in line):
                raise VectorFileError(f"{display(path)}:{lineno}: not UTF-8 text: save the file as UTF-8")
            line = line.strip()
            if not line:
                continue
            parts = line.split("|")
            if len(parts) != 3:
                raise VectorFileError(f"{display(path)}:{lineno}: expected 'id|class|{{v1,v2,...}}', got {line[:60]!r}")
            ext_id, label, vec = (p.strip() for p in parts)
            if not (vec.startswith("{") and vec.endswith("}")) and not (vec.startswith("[") and vec.endswith("]")):
                raise VectorFileError(f"{display(path)}:{lineno}: the vector must be written {{v1,v2,...}}, got {vec[:40]!r}")
            try:
                values = np.array([float(v) for v in vec[1:-1].split(",")], dtype=np.float32)
            except ValueError as exc:
                raise VectorFileError(f"{display(path)}:{lineno}: {exc}") from None
            if rows and values.shape[0] != rows[0].shape[0]:
                raise VectorFileError(
                    f"{display(path)}:{lineno}: vector has {values.shape[0]} values but the first line has {rows[0].shape[0]}"
                )
            ids.append(ext_id)
            labels.append(label or None)
            rows.append(values)
    if not rows:
        raise VectorFileError(f"{display(path)} holds no vectors")
    return VectorSet(
        vectors=np.stack(rows),
        ids=ids,
        labels=labels,
        uris=[f"{file_uri(path.resolve())}#{i}" for i in ids],
        source=path,
    )
