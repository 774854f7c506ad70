"""ANN indexes: one partial expression index per model on its embeddings table.

The form follows pgvector's advice for several dimensions in one column (pgvector README,
"Can I store vectors with different dimensions in the same column?")::

    CREATE INDEX image_embeddings_model_3_hnsw ON pgvision.image_embeddings
        USING hnsw ((embedding::vector(1280)) vector_cosine_ops)
        WITH (m = 16, ef_construction = 64) WHERE model_id = 3

Models over 2,000 dims are indexed as ``halfvec`` (HNSW/IVFFlat limit: 2,000 ``vector``
dims, 4,000 ``halfvec`` dims). The SQL functions (``_nearest``) build the matching
``ORDER BY`` expression, so the index name and expression here and there must agree.
Indexes are built after bulk loads (pgvector README: "faster to create an index after
loading your initial data"), ``CONCURRENTLY`` when the connection is in autocommit mode.
"""

from __future__ import annotations

import math
import time
from typing import Any

import psycopg
from psycopg import sql

from pgvision import index_progress
from pgvision.registry import get_model, get_model_by_id

_OPS = {"cosine": "cosine_ops", "l2": "l2_ops", "inner_product": "ip_ops"}
HALFVEC_ABOVE = 2000
MAX_INDEX_DIMS = 4000


def embeddings_table(kind: str) -> str:
    """``image_embeddings`` or ``face_embeddings``."""
    return "image_embeddings" if kind == "image" else "face_embeddings"


def index_name(model: dict[str, Any], method: str | None = None) -> str:
    """Name of a model's ANN index, e.g. ``image_embeddings_model_3_hnsw``."""
    return f"{embeddings_table(model['kind'])}_model_{model['model_id']}_{method or model['index_method']}"


def ivfflat_lists_for(rows: int) -> int:
    """IVFFlat ``lists``: rows/1000 up to 1M rows, sqrt(rows) above (pgvector README)."""
    return max(1, rows // 1000 if rows <= 1_000_000 else int(math.sqrt(rows)))


def index_ddl(model: dict[str, Any], *, concurrently: bool = True) -> sql.Composed:
    """The ``CREATE INDEX`` statement of a model's ANN index, from its registry row.

    Raises:
        ValueError: method ``none``, or more dims than an index can hold (4,000).
    """
    method = model["index_method"]
    if method not in ("hnsw", "ivfflat"):
        raise ValueError(f"model {model['name']!r} has index_method {method!r}: nothing to build")
    dims = model["dims"]
    if dims > MAX_INDEX_DIMS:
        raise ValueError(
            f"model {model['name']!r} has {dims} dims; pgvector indexes at most {MAX_INDEX_DIMS} (halfvec): "
            "searches stay exact; reduce the dimension to index it"
        )
    typ = "halfvec" if dims > HALFVEC_ABOVE else "vector"
    if method == "hnsw":
        params = sql.SQL("m = {}, ef_construction = {}").format(
            sql.Literal(model["hnsw_m"]), sql.Literal(model["hnsw_ef_construction"])
        )
    else:
        params = sql.SQL("lists = {}").format(sql.Literal(model["ivfflat_lists"] or 1))
    return sql.SQL(
        "CREATE INDEX {conc} IF NOT EXISTS {name} ON pgvision.{table} "
        "USING {method} ((embedding::{typ}({dims})) {opclass}) WITH ({params}) WHERE model_id = {model_id}"
    ).format(
        conc=sql.SQL("CONCURRENTLY" if concurrently else ""),
        name=sql.Identifier(index_name(model)),
        table=sql.Identifier(embeddings_table(model["kind"])),
        method=sql.SQL(method),
        typ=sql.SQL(typ),
        dims=sql.Literal(dims),
        opclass=sql.SQL(f"{typ}_{_OPS[model['metric']]}"),
        params=params,
        model_id=sql.Literal(model["model_id"]),
    )


def stored_rows(conn: psycopg.Connection, model: dict[str, Any]) -> int:
    """Number of embeddings stored for a model."""
    return conn.execute(
        sql.SQL("SELECT count(*) FROM pgvision.{} WHERE model_id = %s").format(
            sql.Identifier(embeddings_table(model["kind"]))
        ),
        (model["model_id"],),
    ).fetchone()[0]


def index_exists(conn: psycopg.Connection, model: dict[str, Any]) -> bool:
    """True when the model's index exists and is valid.

    An index left INVALID by an interrupted ``CREATE INDEX CONCURRENTLY`` is dropped, so
    that the next build starts clean (PostgreSQL docs, "Building Indexes Concurrently").
    """
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)",
        (f"pgvision.{index_name(model)}",),
    ).fetchone()
    if row is not None and not row[0]:
        drop_index(conn, model)
        return False
    return row is not None


def drop_index(conn: psycopg.Connection, model: dict[str, Any], method: str | None = None) -> None:
    """Drop a model's ANN index if it exists."""
    conn.execute(
        sql.SQL("DROP INDEX {} IF EXISTS pgvision.{}").format(
            sql.SQL("CONCURRENTLY" if conn.autocommit else ""), sql.Identifier(index_name(model, method))
        )
    )


def set_index(
    conn: psycopg.Connection,
    model_name: str,
    *,
    method: str = "hnsw",
    m: int | None = None,
    ef_construction: int | None = None,
    lists: int | None = None,
    probes: int | None = None,
    progress: bool = False,
) -> str | None:
    """Choose a model's index method and parameters, then (re)build its index.

    Args:
        model_name: registered model.
        method: ``hnsw`` (default), ``ivfflat`` or ``none`` (exact scans only).
        m, ef_construction: HNSW graph degree and build candidate list (pgvector defaults 16, 64).
        lists: IVFFlat clusters; default :func:`ivfflat_lists_for` the stored rows.
        probes: IVFFlat clusters searched; default sqrt(lists) (pgvector README).
        progress: show the build's progress bar (:mod:`pgvision.index_progress`).

    Returns:
        The index name, or None for method ``none``.
    """
    model = get_model(conn, model_name)
    drop_index(conn, model)
    rows = stored_rows(conn, model)
    if method == "ivfflat":
        lists = lists or ivfflat_lists_for(rows)
        probes = probes or max(1, round(math.sqrt(lists)))
    conn.execute(
        """
        UPDATE pgvision.models SET index_method = %s,
               hnsw_m = coalesce(%s, hnsw_m), hnsw_ef_construction = coalesce(%s, hnsw_ef_construction),
               ivfflat_lists = coalesce(%s, ivfflat_lists), probes = coalesce(%s, probes)
        WHERE model_id = %s
        """,
        (method, m, ef_construction, lists, probes, model["model_id"]),
    )
    return ensure_index(conn, model["model_id"], progress=progress)


#: First key of the advisory lock that serialises index builds of one model ('pgvi').
INDEX_LOCK_CLASS = 0x70677669


def ensure_index(conn: psycopg.Connection, model_id: int, poll_seconds: float = 0.2, *,
                 progress: bool = False) -> str | None:
    """Build the model's ANN index if it is missing; return its name (None for ``none``).

    IVFFlat waits for data (its lists are k-means centroids of stored rows): with no rows
    it is not built yet and None is returned. Uses ``CREATE INDEX CONCURRENTLY`` when
    ``conn`` is in autocommit mode, so loads of other models go on meanwhile.

    Callers take turns per model (a session advisory lock): two loaders finishing together
    would otherwise both see no valid index, and the second would take the first one's
    build, INVALID while it runs, for a leftover and drop it (a deadlock, reproduced with
    two threads on 30k x 256). The lock is polled with ``pg_try_advisory_lock`` rather
    than waited for: a waiting statement holds a snapshot that the concurrent build itself
    waits for (PostgreSQL docs, "Building Indexes Concurrently").

    A build warns first when the HNSW graph will not fit ``maintenance_work_mem``, shows a
    progress bar when ``progress``, and runs ANALYZE after (:func:`pgvision.index_progress.build`).
    """
    while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (INDEX_LOCK_CLASS, model_id)).fetchone()[0]:
        time.sleep(poll_seconds)
    try:
        return _ensure_index_locked(conn, model_id, progress)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (INDEX_LOCK_CLASS, model_id))


def _ensure_index_locked(conn: psycopg.Connection, model_id: int, progress: bool = False) -> str | None:
    model = get_model_by_id(conn, model_id)
    if model["index_method"] == "none" or model["dims"] > MAX_INDEX_DIMS:
        return None
    if index_exists(conn, model):
        return index_name(model)
    rows = stored_rows(conn, model)
    if model["index_method"] == "ivfflat":
        if rows == 0:
            return None
        if model["ivfflat_lists"] is None:
            lists = ivfflat_lists_for(rows)
            conn.execute(
                "UPDATE pgvision.models SET ivfflat_lists = %s, probes = coalesce(probes, %s) WHERE model_id = %s",
                (lists, max(1, round(math.sqrt(lists))), model_id),
            )
            model = get_model_by_id(conn, model_id)
    index_progress.build(conn, model, index_ddl(model, concurrently=conn.autocommit), rows=rows, progress=progress)
    return index_name(model)
