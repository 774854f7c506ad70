"""The model registry, ``pgvision.models``: one row per embedding model.

A model's row fixes what its vectors mean (dims, metric, normalisation, preprocessing,
weights digest). Loading under an existing name with other dims, metric or weights is
refused before any row is written: vectors of two models must never mix in one index.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgvision.errors import InvalidValue, ModelMismatch, UnknownModel

METRICS = ("cosine", "l2", "inner_product")
KINDS = ("image", "face")


def embeddings_table(kind: str) -> str:
    """The table of a model kind's vectors: ``image_embeddings`` or ``face_embeddings``.

    Args:
        kind: a model's ``kind``, one of ``KINDS``.
    """
    return "image_embeddings" if kind == "image" else "face_embeddings"


#: Longest vector a ``vector`` column stores (pgvector's ``VECTOR_MAX_DIM``, src/vector.h).
MAX_DIMS = 16000


@dataclass(frozen=True)
class ModelSpec:
    """What a model's vectors are.

    Attributes:
        name: registry name, e.g. ``efficientnet-lite0``, ``dlib``, ``torchscript:/m.pt``.
        kind: ``image`` (rows of ``image_embeddings``) or ``face`` (``face_embeddings``).
        dims: vector length D (1..16000; HNSW/IVFFlat index up to 2,000 as ``vector``,
            up to 4,000 through ``halfvec``).
        metric: ``cosine``, ``l2`` or ``inner_product``.
        normalized: True when vectors are L2-normalised before storage.
        preprocessing: how inputs were prepared (resize, crop, mean/std...), stored as jsonb.
        weights_sha256: hex digest of the weights file, to refuse mixing two weight sets.
        threshold: identity threshold (face models): largest matching distance in ``metric``.
        min_margin: identity margin (face models): smallest best-vs-second distance gap.
    """

    name: str
    kind: str
    dims: int
    metric: str
    normalized: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    threshold: float | None = None
    min_margin: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidValue(f"model kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.metric not in METRICS:
            raise InvalidValue(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not 1 <= self.dims <= MAX_DIMS:
            raise InvalidValue(f"dims must be between 1 and {MAX_DIMS}, got {self.dims}")


def get_model(conn: psycopg.Connection, name: str) -> dict[str, Any]:
    """Return the ``pgvision.models`` row of ``name`` as a dict.

    Raises:
        UnknownModel: no such model; the message lists the registered ones.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM pgvision.models WHERE name = %s", (name,)).fetchone()
        if row is None:
            names = [r["name"] for r in cur.execute("SELECT name FROM pgvision.models ORDER BY name")]
            known = ", ".join(names) or "none yet"
            raise UnknownModel(f"unknown model {name!r}: the registered models are {known}")
        return row


def get_model_by_id(conn: psycopg.Connection, model_id: int) -> dict[str, Any]:
    """Return the ``pgvision.models`` row with this ``model_id``."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute("SELECT * FROM pgvision.models WHERE model_id = %s", (model_id,)).fetchone()
    if row is None:
        raise UnknownModel(f"no model with model_id {model_id}")
    return row


def register_model(conn: psycopg.Connection, spec: ModelSpec) -> int:
    """Register ``spec`` (or check it against the existing row) and return its ``model_id``.

    The first model of a kind becomes that kind's default (``search_images`` without
    ``model =>``). Safe under concurrent loaders (``ON CONFLICT``). A model already
    registered is only read: no INSERT is tried, so reruns use no ``model_id`` sequence
    value and the ids stay dense. Commits only when ``conn`` is in autocommit mode.

    Raises:
        ModelMismatch: ``spec.name`` is registered with another kind, dims, metric or
            weights digest. Nothing is written.
    """
    known = conn.execute("SELECT 1 FROM pgvision.models WHERE name = %s", (spec.name,)).fetchone()
    if known is None:
        conn.execute(
            """
            INSERT INTO pgvision.models (name, kind, dims, metric, normalized, preprocessing,
                                         weights_sha256, threshold, min_margin, is_default)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,
                    NOT EXISTS (SELECT 1 FROM pgvision.models WHERE kind = %s AND is_default))
            ON CONFLICT DO NOTHING
            """,
            (spec.name, spec.kind, spec.dims, spec.metric, spec.normalized, Jsonb(spec.preprocessing),
             spec.weights_sha256, spec.threshold, spec.min_margin, spec.kind),
        )
    row = get_model(conn, spec.name)
    theirs = (row["kind"], row["dims"], row["metric"])
    ours = (spec.kind, spec.dims, spec.metric)
    weights_differ = (
        row["weights_sha256"] is not None
        and spec.weights_sha256 is not None
        and row["weights_sha256"] != spec.weights_sha256
    )
    if theirs != ours or weights_differ:
        rerun = ("pgvision load-vectors FILE --model NEW_NAME ..." if spec.preprocessing.get("source") == "load-vectors"
                 else "pgvision load --name NEW_NAME ...")
        raise ModelMismatch(
            f"model {spec.name!r} is registered with {row['dims']}-d {row['metric']} {row['kind']} vectors"
            f" (weights {str(row['weights_sha256'])[:12]}) but this run gives {spec.dims}-d {spec.metric}"
            f" {spec.kind} vectors (weights {str(spec.weights_sha256)[:12]}): load under another model name"
            f" ({rerun}), or into another database (--database-url)"
        )
    return row["model_id"]


def require_image_model(conn: psycopg.Connection) -> None:
    """Raise :class:`UnknownModel` when no image model is registered (nothing to search yet)."""
    if not conn.execute("SELECT EXISTS (SELECT FROM pgvision.models WHERE kind = 'image')").fetchone()[0]:
        raise UnknownModel(
            "no image model is loaded yet, so there is nothing to search: "
            "run pgvision load PATH (or pgvision load-vectors FILE) first"
        )


def check_probe_model(conn: psycopg.Connection, spec: ModelSpec) -> None:
    """Check that a probe embedded with ``spec`` can be searched among ``spec.name``'s vectors.

    Raises:
        UnknownModel: ``spec.name`` is not registered.
        ModelMismatch: it is stored with other dims or other weights (digests differ).
    """
    row = get_model(conn, spec.name)
    if row["dims"] != spec.dims or (
        row["weights_sha256"] and spec.weights_sha256 and row["weights_sha256"] != spec.weights_sha256
    ):
        raise ModelMismatch(
            f"model {spec.name!r} is stored with {row['dims']}-d vectors (weights "
            f"{str(row['weights_sha256'])[:12]}) but this probe was embedded with {spec.dims}-d "
            f"(weights {str(spec.weights_sha256)[:12]}): pass the --weights/--model used to load it"
        )
