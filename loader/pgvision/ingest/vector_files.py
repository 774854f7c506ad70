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
from pgvision.ingest.files import (
    FileSkipped,
    check_file,
    display,
    file_uri,
    sha256_file,
)
from pgvision.ingest.pg_copy import ImageRecord
from pgvision.registry import MAX_DIMS

FORMATS = ("auto", "npy", "analyticdb")
#: First bytes of every ``.npy`` file (NumPy's format specification, ``numpy.lib.format``).
NPY_MAGIC = b"\x93NUMPY"


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
        """One :class:`pgvision.ingest.pg_copy.ImageRecord` per row (see the module docstring for keys)."""
        out = []
        for ext_id, label, uri in zip(self.ids, self.labels, self.uris, strict=True):
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

    Returns:
        :class:`VectorSet` whose ``vectors`` are ``(N, D)`` float32, ``N >= 1``,
        ``1 <= D <= 16000``, every value finite.

    Raises:
        VectorFileError: unreadable file, wrong shape, no rows, more dimensions than
            pgvector stores, values that are not real numbers, not finite or beyond
            float32's range (pgvector stores 4-byte floats), ragged rows, side files of
            another length; the message names file and row or line. Nothing is loaded.
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
    vs.vectors = _checked_float32(vs.vectors, path, vs.ids)
    return vs


#: Largest magnitude a float32 (pgvector's element type) holds: 3.4028235e+38.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _checked_float32(values: np.ndarray, path: Path, ids: list[str]) -> np.ndarray:
    """``values`` (N, D) of any real numeric dtype as contiguous float32, after the checks of
    :func:`read_vectors` (all of them here, for both formats)."""
    name = display(path)
    if values.dtype.kind not in "iuf":
        kind = "complex" if values.dtype.kind == "c" else str(values.dtype)
        raise VectorFileError(f"{name} holds {kind} values; pgvector stores real numbers: save a float32 array")
    n, dims = values.shape
    if n == 0:
        raise VectorFileError(f"{name} holds no vectors")
    if dims == 0:
        raise VectorFileError(f"{name} holds vectors of 0 dimensions; expected an (N, D) array with D >= 1")
    if dims > MAX_DIMS:
        raise VectorFileError(
            f"{name} holds {dims}-dimensional vectors; pgvector's vector type stores at most {MAX_DIMS}:"
            " reduce them (e.g. PCA) before loading"
        )
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise VectorFileError(
                f"{name}: row {i} (id {display(ids[i])}) has NaN or infinite values; pgvector stores finite floats only"
            )
        if values.dtype.itemsize > 4:
            big = (np.abs(values) > FLOAT32_MAX).any(axis=1)
            if big.any():
                i = int(np.flatnonzero(big)[0])
                value = float(values[i][np.abs(values[i]) > FLOAT32_MAX][0])
                raise VectorFileError(
                    f"{name}: row {i} (id {display(ids[i])}) has the value {value:.6g}, beyond float32's range"
                    f" (+-{FLOAT32_MAX:.6g}) that pgvector stores: scale the vectors"
                )
    return np.ascontiguousarray(values, dtype=np.float32)


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
        side_values = _load_npy(npy)
        if side_values.ndim != 1:
            raise VectorFileError(
                f"{display(npy)} holds a {side_values.ndim}-d array; expected one {what[:-1]} per row (1-d)"
            )
        values = [str(v) for v in side_values.tolist()]
        side = npy
    else:
        return None
    if len(values) != n:
        raise VectorFileError(
            f"{display(side)} has {len(values)} entries but {display(path)} has {n} vectors: "
            "one entry per row is needed"
        )
    return values


def _load_npy(path: Path) -> np.ndarray:
    """One array from a ``.npy`` file, never a pickle (unpickling runs code) nor an ``.npz``."""
    with open(path, "rb") as fh:
        magic = fh.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        what = "a .npz archive" if magic.startswith(b"PK") else "not a NumPy .npy array"
        raise VectorFileError(f"{display(path)} is {what} (no .npy header); save one array with numpy.save")
    _check_npy_size(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, SyntaxError, MemoryError) as exc:
        if "allow_pickle" in str(exc):  # numpy's text suggests allow_pickle, which pgvision never sets
            raise VectorFileError(
                f"{display(path)} holds Python objects, which are never loaded (unpickling runs code): "
                "save a numeric array with numpy.save"
            ) from None
        raise VectorFileError(
            f"{display(path)} is not a readable NumPy .npy array ({exc}); save it with numpy.save"
        ) from None


def _check_npy_size(path: Path) -> None:
    """Compare the shape the ``.npy`` header declares with the file's size, before numpy
    allocates it: a hostile or cut-short header is one line, never a MemoryError.

    Raises:
        VectorFileError: unreadable header, or data bytes other than shape x itemsize.
    """
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as fh:
            version = npy_format.read_magic(fh)
            read_header = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}.get(
                version)
            if read_header is None:  # (3, 0): utf-8 field names; numpy reads it below
                return
            shape, _, dtype = read_header(fh, max_header_size=10_000)
            offset = fh.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise VectorFileError(
            f"{display(path)} has a broken .npy header ({str(exc).splitlines()[0][:120]}): "
            "save it again with numpy.save"
        ) from None
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False) with its own line
    need = int(np.prod(shape, dtype=object)) * dtype.itemsize
    have = path.stat().st_size - offset
    if need != have:
        raise VectorFileError(
            f"{display(path)} declares a {' x '.join(map(str, shape)) or 'scalar'} {dtype} array ({need:,} bytes) but "
            f"holds {have:,} bytes of data: the file is cut short or its header is wrong; "
            "save it again with numpy.save")


def read_npy(path: str | os.PathLike) -> VectorSet:
    """Read ``FILE.npy`` and its optional ``FILE.ids`` / ``.labels`` / ``.uris`` files.

    The vectors keep the file's dtype; :func:`read_vectors` (the entry point) converts them
    to float32 after checking their values.

    Raises:
        VectorFileError: not a 2-D numeric array, or side files of another length.
    """
    path = Path(path)
    arr = _load_npy(path)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise VectorFileError(f"{display(path)} holds a {arr.ndim}-d {arr.dtype} array; expected (N, D) floats")
    # float32 conversion and the value checks: read_vectors (_checked_float32)
    n = arr.shape[0]
    ids = _side_file(path, "ids", n) or [str(i) for i in range(n)]
    labels = _side_file(path, "labels", n)
    uris = _side_file(path, "uris", n)
    return VectorSet(
        vectors=arr,
        ids=ids,
        labels=[lab or None for lab in labels] if labels else [None] * n,
        uris=uris or [f"{file_uri(path.resolve())}#{i}" for i in ids],
        source=path,
    )


def read_analyticdb_text(path: str | os.PathLike) -> VectorSet:
    """Read the AnalyticDB tutorial's ``id|class|{v1,v2,...}`` lines (blank lines ignored).

    The vectors are parsed as float64; :func:`read_vectors` (the entry point) checks their
    range and converts them to float32.

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
                raise VectorFileError(
                    f"{display(path)}:{lineno}: the vector must be written {{v1,v2,...}}, got {vec[:40]!r}"
                )
            try:
                values = np.array([float(v) for v in vec[1:-1].split(",")], dtype=np.float64)
            except ValueError as exc:
                raise VectorFileError(f"{display(path)}:{lineno}: {exc}") from None
            if rows and values.shape[0] != rows[0].shape[0]:
                raise VectorFileError(
                    f"{display(path)}:{lineno}: vector has {values.shape[0]} values "
                    f"but the first line has {rows[0].shape[0]}"
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
