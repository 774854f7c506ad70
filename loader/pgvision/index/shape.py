"""The index shape chosen by size: HNSW ``m`` / ``ef_construction`` and ``halfvec`` from the data.

A model whose ``models.index_shape`` is ``auto`` (the default; ``manual`` once ``pgvision db
index`` is given ``--m``, ``--ef-construction`` or ``--quantization``) gets its HNSW shape
from :func:`choose_shape` whenever its index is built (:func:`pgvision.index.ddl.ensure_index`,
after a load) or rebuilt (:mod:`pgvision.index.rebuild`). The rules, and the measurements
they come from (docs/benchmarks.md, sections 3 and 8; clustered
512-d unit vectors, cosine, recall@10 of held-out queries):

1. **Rows below** :data:`DENSE_FROM_ROWS` **(250,000): m 16, ef_construction 64** (pgvector's
   defaults). The stored-sample ladder (target 0.95) chose ef_search 40 at 100k x 512
   (held out 0.98) and 80 at 200k x 512 (0.928 at 40, 0.948 at 60, 0.958 at 80; held out
   0.973); they build 2.7x faster than the denser graph.
2. **From 250,000 rows: m 32, ef_construction 128.** At 1M x 512 m 16 / ef_construction 64
   stop at recall@10 0.951 held out at ef_search 1,000, pgvector's maximum (155 QPS, p50
   6.2 ms on 2 cores), where m 32 / ef_construction 128 reach 0.957 at ef_search 60 (370
   QPS, p50 2.4 ms), for 2.4x the build time (663 s vs 274 s) and the same index size
   (``bench/bench_scale.py --rows 1000000 --faces 0 --quantization auto none binary --m 16
   --ef-construction 64``, one run on an idle 2-core box, 3 interleaved rounds;
   docs/benchmarks.md section 8). The boundary: the ef_search m 16 needs doubled from 100k
   to 200k rows (40 to 80), so past about 250k it would need more than 100; 250k-1M was
   not measured.
3. **halfvec past a memory share**: when the full-precision graph
   (:func:`pgvision.index.build_progress.hnsw_graph_bytes`, about 2.6 KB a 512-d vector at
   m 16) exceeds :data:`HALFVEC_MEMORY_SHARE` (a quarter) of the server's memory, the index
   is built on ``embedding::halfvec(D)``: half the bytes, and at 1M x 512 the same held-out
   recall (0.953 vs 0.954) at ef_search 1,000. A quarter of the memory is what ``pgvision db
   tune`` (pgtune's rule) gives ``shared_buffers``: a larger index cannot stay in
   PostgreSQL's buffer cache. The server's memory is read from ``effective_cache_size``
   (3/4 of the memory after ``db tune``, so x 4/3; PostgreSQL's default 4GB on an untuned
   server counts as 5.3 GB, which errs towards halfvec). Models over 2,000 dims are
   indexed through halfvec whatever the rule (pgvector's limit for ``vector`` indexes).

The ef_search that reaches the target recall is then chosen by measurement
(:mod:`pgvision.index.recall_target`), as for any index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from pgvision.index.build_progress import hnsw_graph_bytes, server_memory_bytes

#: Rows from which an automatic HNSW index is built with :data:`DENSE` (rule 2 above).
DENSE_FROM_ROWS = 250_000
#: (m, ef_construction) below and from :data:`DENSE_FROM_ROWS` rows.
SPARSE = (16, 64)
DENSE = (32, 128)
#: Share of the server's memory above which the full-precision graph is built as halfvec.
HALFVEC_MEMORY_SHARE = 0.25
#: Dimensions above which every index is halfvec anyway (:data:`pgvision.index.ddl.HALFVEC_ABOVE`).
_HALFVEC_ABOVE = 2000


@dataclass(frozen=True)
class IndexShape:
    """An HNSW index's shape and why.

    Attributes:
        m: graph degree (pgvector ``m``, 2..100).
        ef_construction: build candidate list (pgvector ``ef_construction``, >= 2 m).
        quantization: ``none`` or ``halfvec`` (the index expression's type).
        reason: one line naming the rule that chose it, e.g.
            ``1,000,000 rows >= 250,000: m 32, ef_construction 128; graph 3.2 GB <= 25 % of 24.0 GB: full precision``.
    """

    m: int
    ef_construction: int
    quantization: str
    reason: str


def choose_shape(rows: int, dims: int, memory_bytes: int) -> IndexShape:
    """The HNSW shape for ``rows`` vectors of ``dims`` dimensions on a server with ``memory_bytes``.

    Args:
        rows: vectors the index will hold (>= 0).
        dims: their dimension (1..16000).
        memory_bytes: the server machine's memory in bytes (:func:`server_memory_bytes`).

    Returns:
        :class:`IndexShape` by the rules of this module's docstring.
    """
    m, ef_construction = DENSE if rows >= DENSE_FROM_ROWS else SPARSE
    compare = ">=" if rows >= DENSE_FROM_ROWS else "<"
    reason = f"{rows:,} rows {compare} {DENSE_FROM_ROWS:,}: m {m}, ef_construction {ef_construction}"
    gb = 1024**3
    if dims > _HALFVEC_ABOVE:
        return IndexShape(
            m,
            ef_construction,
            "none",
            reason + f"; {dims} dims > {_HALFVEC_ABOVE}: halfvec index",
        )
    graph = hnsw_graph_bytes(rows, dims, m)
    share = f"{HALFVEC_MEMORY_SHARE:.0%} of {memory_bytes / gb:.1f} GB"
    if graph > HALFVEC_MEMORY_SHARE * memory_bytes:
        return IndexShape(
            m,
            ef_construction,
            "halfvec",
            reason + f"; graph {graph / gb:.1f} GB > {share}: halfvec",
        )
    return IndexShape(
        m,
        ef_construction,
        "none",
        reason + f"; graph {graph / gb:.1f} GB <= {share}: full precision",
    )


def apply_auto_shape(
    conn: psycopg.Connection, model: dict[str, Any], rows: int
) -> IndexShape | None:
    """Store :func:`choose_shape`'s shape on an ``auto`` HNSW model before its index is built.

    Args:
        conn: a connection that may update ``pgvision.models`` (the schema owner; a role
            without that right keeps the model's shape, and None is returned).
        model: registry row (``model_id``, ``index_method``, ``index_shape``, ``dims``, ...).
        rows: vectors the build will read.

    Returns:
        The shape stored, or None when the model is ``manual``, not HNSW, or not ours to change.
    """
    if model.get("index_shape", "manual") != "auto" or model["index_method"] != "hnsw":
        return None
    if not conn.execute(
        "SELECT has_column_privilege('pgvision.models', 'hnsw_m', 'UPDATE') "
        "AND has_column_privilege('pgvision.models', 'quantization', 'UPDATE')"
    ).fetchone()[0]:
        return None
    shape = choose_shape(rows, model["dims"], server_memory_bytes(conn))
    if (model["hnsw_m"], model["hnsw_ef_construction"], model["quantization"]) != (
        shape.m,
        shape.ef_construction,
        shape.quantization,
    ):
        conn.execute(
            "UPDATE pgvision.models SET hnsw_m = %s, hnsw_ef_construction = %s, quantization = %s WHERE model_id = %s",
            (shape.m, shape.ef_construction, shape.quantization, model["model_id"]),
        )
    return shape


__all__ = [
    "DENSE",
    "DENSE_FROM_ROWS",
    "HALFVEC_MEMORY_SHARE",
    "SPARSE",
    "IndexShape",
    "apply_auto_shape",
    "choose_shape",
    "server_memory_bytes",
]
