"""ANN indexes: one partial expression index per model on its embeddings table.

The form follows pgvector's advice for several dimensions in one column (pgvector README,
"Can I store vectors with different dimensions in the same column?")::

    CREATE INDEX image_embeddings_model_3_hnsw ON pgvision.image_embeddings
        USING hnsw ((embedding::vector(1280)) vector_cosine_ops)
        WITH (m = 16, ef_construction = 64) WHERE model_id = 3

Models over 2,000 dims are indexed as ``halfvec`` (HNSW/IVFFlat limit: 2,000 ``vector``
dims, 4,000 ``halfvec`` dims). The SQL functions (``_nearest``) build the matching
``ORDER BY`` expression, so the index name and expression here and there must agree.

Quantized indexes (``models.quantization``, pgvector README "Half-Precision Indexing" and
"Binary Quantization"): ``halfvec`` indexes ``embedding::halfvec(D)`` (half the memory
of a ``vector`` index); ``binary`` indexes ``binary_quantize(embedding::vector(D))::bit(D)``
with ``bit_hamming_ops`` (1 bit per dimension) and ``_nearest`` re-ranks its ef_search
candidates by the full-precision distance. bench/bench_scale.py --quantization measures
them (index MB, build s, QPS, recall@10) against the full-precision index.
Indexes are built after bulk loads (pgvector README: "faster to create an index after
loading your initial data"), ``CONCURRENTLY`` when the connection is in autocommit mode.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Any, Iterator

import psycopg
from psycopg import sql

from pgvision.errors import InvalidValue
from pgvision.index import build_progress, shape
from pgvision.registry import embeddings_table, get_model, get_model_by_id

_OPS = {"cosine": "cosine_ops", "l2": "l2_ops", "inner_product": "ip_ops"}
HALFVEC_ABOVE = 2000
MAX_INDEX_DIMS = 4000
#: Index quantizations: the index expression's type (see the module docstring).
QUANTIZATIONS = ("none", "halfvec", "binary")


def index_name(model: dict[str, Any], method: str | None = None) -> str:
    """Name of a model's ANN index, e.g. ``image_embeddings_model_3_hnsw``."""
    return f"{embeddings_table(model['kind'])}_model_{model['model_id']}_{method or model['index_method']}"


def ivfflat_lists_for(rows: int) -> int:
    """IVFFlat ``lists``: rows/1000 up to 1M rows, sqrt(rows) above (pgvector README)."""
    return max(1, rows // 1000 if rows <= 1_000_000 else int(math.sqrt(rows)))


def index_ddl(model: dict[str, Any], *, concurrently: bool = True, name: str | None = None) -> sql.Composed:
    """The ``CREATE INDEX`` statement of a model's ANN index, from its registry row.

    ``name`` = another name for the index than :func:`index_name`'s (a rebuild beside the
    old index, :mod:`pgvision.index.rebuild`).

    Raises:
        ValueError: method ``none``, or more dims than an index can hold (4,000).
    """
    method = model["index_method"]
    if method not in ("hnsw", "ivfflat"):
        raise InvalidValue(f"model {model['name']!r} has index_method {method!r}: nothing to build")
    dims = model["dims"]
    if dims > MAX_INDEX_DIMS:
        raise InvalidValue(
            f"model {model['name']!r} has {dims} dims; pgvector indexes at most {MAX_INDEX_DIMS} (halfvec): "
            "searches stay exact; reduce the dimension to index it"
        )
    quantization = model.get("quantization") or "none"
    typ = "halfvec" if dims > HALFVEC_ABOVE or quantization == "halfvec" else "vector"
    expr = sql.SQL("(embedding::{typ}({dims})) {opclass}").format(
        typ=sql.SQL(typ), dims=sql.Literal(dims), opclass=sql.SQL(f"{typ}_{_OPS[model['metric']]}"))
    if quantization == "binary":
        expr = sql.SQL("(binary_quantize(embedding::vector({dims}))::bit({dims})) bit_hamming_ops").format(
            dims=sql.Literal(dims))
    if method == "hnsw":
        params = sql.SQL("m = {}, ef_construction = {}").format(
            sql.Literal(model["hnsw_m"]), sql.Literal(model["hnsw_ef_construction"])
        )
    else:
        params = sql.SQL("lists = {}").format(sql.Literal(model["ivfflat_lists"] or 1))
    return sql.SQL(
        "CREATE INDEX {conc} IF NOT EXISTS {name} ON pgvision.{table} "
        "USING {method} ({expr}) WITH ({params}) WHERE model_id = {model_id}"
    ).format(
        conc=sql.SQL("CONCURRENTLY" if concurrently else ""),
        name=sql.Identifier(name or index_name(model)),
        table=sql.Identifier(embeddings_table(model["kind"])),
        method=sql.SQL(method),
        expr=expr,
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
    quantization: str | None = None,
    progress: bool = False,
) -> str | None:
    """Choose a model's index method and parameters, then (re)build its index.

    Args:
        model_name: registered model.
        method: ``hnsw`` (default), ``ivfflat`` or ``none`` (exact scans only).
        m, ef_construction: HNSW graph degree and build candidate list (pgvector defaults 16, 64).
        lists: IVFFlat clusters; default :func:`ivfflat_lists_for` the stored rows.
        probes: IVFFlat clusters searched; default sqrt(lists) (pgvector README).
        quantization: ``none`` (full precision), ``halfvec`` or ``binary`` (see the module
            docstring); None keeps the model's.
            Giving ``m``, ``ef_construction`` or ``quantization`` makes the model's shape
            ``manual``; without them an ``auto`` model's HNSW shape follows its size
            (:mod:`pgvision.index.shape`).
        progress: show the build's progress bar (:mod:`pgvision.index.build_progress`).

    Returns:
        The index name, or None for method ``none``.

    The model's view (``pgvision.vectors_<model>``) is rebuilt, typed as the new index's
    expression, by the models trigger (sql/functions/_model_view.v2.sql). The recall
    measured on the old index (``measured_recall``, ``recall_rows``) is cleared: it does not
    describe the new one (``target_recall`` is kept, and measured again after a load).

    Raises:
        ValueError: unknown quantization.
        psycopg.errors.DependentObjectsStillExist: objects depend on the model's view, so it
            cannot be rebuilt; nothing is changed (the old index stays).
    """
    if quantization is not None and quantization not in QUANTIZATIONS:
        raise InvalidValue(f"unknown quantization {quantization!r}: use one of {', '.join(QUANTIZATIONS)}")
    model = get_model(conn, model_name)
    rows = stored_rows(conn, model)
    if method == "ivfflat":
        lists = lists or ivfflat_lists_for(rows)
        probes = probes or max(1, round(math.sqrt(lists)))
    conn.execute(
        """
        UPDATE pgvision.models SET index_method = %s,
               hnsw_m = coalesce(%s, hnsw_m), hnsw_ef_construction = coalesce(%s, hnsw_ef_construction),
               ivfflat_lists = coalesce(%s, ivfflat_lists), probes = coalesce(%s, probes),
               quantization = coalesce(%s, quantization),
               index_shape = CASE WHEN %s THEN 'manual' ELSE index_shape END,
               measured_recall = NULL, recall_rows = NULL
        WHERE model_id = %s
        """,
        (method, m, ef_construction, lists, probes, quantization,
         m is not None or ef_construction is not None or quantization is not None, model["model_id"]),
    )  # first: when the model's view cannot follow (objects depend on it) nothing has changed
    drop_index(conn, model)
    return ensure_index(conn, model["model_id"], progress=progress)


#: First key of the advisory lock that serialises index builds of one model ('pgvi').
INDEX_LOCK_CLASS = 0x70677669


def _poll_lock(conn: psycopg.Connection, key: int, poll_seconds: float, timeout_s: float) -> bool:
    """Take the session advisory lock (:data:`INDEX_LOCK_CLASS`, ``key``) by polling
    ``pg_try_advisory_lock`` between client-side sleeps (a waiting statement would hold a
    snapshot that a concurrent index build waits for); False after ``timeout_s`` seconds."""
    waited = 0.0
    while not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (INDEX_LOCK_CLASS, key)).fetchone()[0]:
        if waited >= timeout_s:
            return False
        time.sleep(poll_seconds)
        waited += poll_seconds
    return True


#: Second key of the advisory lock under which a load's last step runs (``ANALYZE``, the
#: model's index, the collections' own indexes, the recall re-check): model ids start at 1,
#: so 0 names "maintenance of pgvision's tables" as a whole.
MAINTENANCE_KEY = 0


@contextmanager
def maintenance_lock(conn: psycopg.Connection, poll_seconds: float = 0.2) -> Iterator[None]:
    """Hold the session advisory lock (:data:`INDEX_LOCK_CLASS`, :data:`MAINTENANCE_KEY`).

    Two loads finishing together would otherwise run ``ANALYZE`` of a table beside the
    other's ``CREATE INDEX CONCURRENTLY`` on it: the ``ANALYZE`` waits for the build's
    SHARE UPDATE EXCLUSIVE lock while the build waits for the ``ANALYZE``'s transaction to
    end, and PostgreSQL cancels one of them ("deadlock detected"; PostgreSQL docs,
    "Building Indexes Concurrently": the build waits for every transaction that could use
    the index). Polled with ``pg_try_advisory_lock`` between client-side sleeps, so no
    waiting statement holds a snapshot the build would wait for. Session advisory locks
    stack, so a holder may take it again. Waits as long as the other load's last step runs.
    """
    _poll_lock(conn, MAINTENANCE_KEY, poll_seconds, math.inf)
    try:
        yield
    finally:
        if not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock(%s, %s)", (INDEX_LOCK_CLASS, MAINTENANCE_KEY))
            except psycopg.Error:
                pass  # the session is unusable; its end releases the lock


#: Longest wait, in seconds, for another session's build of the same index (a large HNSW
#: build takes minutes; an hour means a stuck or hostile lock holder).
INDEX_LOCK_TIMEOUT_S = 3600.0


def ensure_index(conn: psycopg.Connection, model_id: int, poll_seconds: float = 0.2,
                 timeout_s: float = INDEX_LOCK_TIMEOUT_S, progress: bool = False) -> str | None:
    """Build the model's ANN index if it is missing; return its name (None for ``none``).

    IVFFlat waits for data (its lists are k-means centroids of stored rows): with no rows
    it is not built yet and None is returned. Uses ``CREATE INDEX CONCURRENTLY`` when
    ``conn`` is in autocommit mode, so loads of other models go on meanwhile.

    Callers take turns per model (a session advisory lock): two loaders finishing together
    would otherwise both see no valid index, and the second would take the first one's
    build, INVALID while it runs, for a leftover and drop it (a deadlock, reproduced with
    two threads on 30k x 256). The lock is polled with ``pg_try_advisory_lock`` rather
    than waited for: a waiting statement holds a snapshot that the concurrent build itself
    waits for (PostgreSQL docs, "Building Indexes Concurrently"). After ``timeout_s``
    seconds of waiting it raises :class:`pgvision.errors.LockTimeout` naming the holder's pid.
    A build that fails (e.g. a value out of halfvec's range) drops the INVALID index it
    leaves behind before the error goes up.

    An ``auto`` HNSW model gets the shape its row count calls for first
    (:func:`pgvision.index.shape.apply_auto_shape`).
    A build warns first when the HNSW graph will not fit ``maintenance_work_mem``, shows a
    progress bar when ``progress``, and runs ANALYZE after (:func:`pgvision.index.build_progress.build`).
    """
    if not _poll_lock(conn, model_id, poll_seconds, timeout_s):
        from pgvision.errors import LockTimeout
        from pgvision.ingest.pg_copy import lock_holders

        raise LockTimeout(
            f"the index of model {model_id} has been locked for {timeout_s:g} s by "
            f"{lock_holders(conn, INDEX_LOCK_CLASS, model_id)}: wait for that build to finish, or ask whoever "
            "runs that pid (or a database admin) to end it, then run pgvision db index"
        )
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
    if shape.apply_auto_shape(conn, model, rows) is not None:
        model = get_model_by_id(conn, model_id)
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
    try:
        build_progress.build(conn, model, index_ddl(model, concurrently=conn.autocommit), rows=rows, progress=progress)
    except psycopg.Error:
        if conn.autocommit and not conn.closed:  # a failed CONCURRENTLY build leaves an INVALID index
            drop_index(conn, model)
        raise
    return index_name(model)
