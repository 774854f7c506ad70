"""A collection's own partial ANN index, once the collection is large enough.

A search within a collection (``collection =>``, or a caller whom row-level security limits
to its collections) filters the model's index by collection after the scan: pgvector applies
a ``WHERE`` after the index scan, and ``_nearest.v5`` walks on by a bounded iterative scan
(``hnsw.iterative_scan``) until it has k rows, or answers a collection of at most 2,000 rows
by an exact scan of its rows. Between the two, a collection that is a small share of a large
model makes the walk visit many other collections' rows. Such a collection gets its own
partial index, the model's index expression restricted to it::

    CREATE INDEX image_embeddings_model_3_collection_7_hnsw ON pgvision.image_embeddings
        USING hnsw ((embedding::vector(512)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
        WHERE model_id = 3 AND collection_id = 7

``_nearest.v5`` puts the collection into its statement as a literal (``AND e.collection_id =
7``), so the planner can choose this smaller index (the per-tenant partial HNSW indexes above
a row threshold that Grafana uses; pgvector issue #479). Rule: at least
:data:`MIN_ROWS` rows of the model in the collection, and at most :data:`MAX_SHARE` of the
model's rows (a collection that is most of the model is served well by the model's index).
The figures behind them: docs/collections.md (bench/bench_collections.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgvision.index.ddl import index_ddl
from pgvision.registry import embeddings_table, get_model_by_id

#: Rows of a model a collection needs before it gets its own index: the smallest collection
#: that ``_nearest`` does not answer by an exact scan (it scans at most 2,000 rows exactly).
#: Measured (docs/collections.md, 200k x 128): at 5,000 rows the own index turned recall@10
#: 0.80 into 0.98 and p99 77 ms into about 20 ms.
MIN_ROWS = 2_001
#: Largest share of the model's rows a collection may hold and still get its own index.
MAX_SHARE = 0.5


def collection_index_name(model: dict[str, Any], collection_id: int) -> str:
    """E.g. ``image_embeddings_model_3_collection_7_hnsw``."""
    table = embeddings_table(model["kind"])
    return f"{table}_model_{model['model_id']}_collection_{collection_id}_{model['index_method']}"


def collection_index_ddl(model: dict[str, Any], collection_id: int, *, concurrently: bool = True) -> sql.Composed:
    """The ``CREATE INDEX`` of a collection's own index: the model's, ``AND collection_id = C``."""
    return sql.Composed(
        [
            index_ddl(model, concurrently=concurrently, name=collection_index_name(model, collection_id)),
            sql.SQL(" AND collection_id = "),
            sql.Literal(int(collection_id)),
        ]
    )


def collections_due(conn: psycopg.Connection, model: dict[str, Any]) -> list[tuple[int, int]]:
    """``(collection_id, rows)`` of the collections that should have their own index of ``model``
    and do not: at least :data:`MIN_ROWS` rows, at most :data:`MAX_SHARE` of the model's rows."""
    counts = conn.execute(
        sql.SQL("SELECT collection_id, count(*) FROM pgvision.{} WHERE model_id = %s GROUP BY 1 ORDER BY 1").format(
            sql.Identifier(embeddings_table(model["kind"]))
        ),
        (model["model_id"],),
    ).fetchall()
    total = sum(n for _, n in counts)
    return [
        (cid, n)
        for cid, n in counts
        if n >= MIN_ROWS
        and n <= MAX_SHARE * total
        and conn.execute("SELECT to_regclass(%s)", (f"pgvision.{collection_index_name(model, cid)}",)).fetchone()[0]
        is None
    ]


def ensure_collection_indexes(conn: psycopg.Connection, model_id: int) -> list[str]:
    """Build the own index of every collection due one (:func:`collections_due`); return their names.

    Only the role that may create indexes on the embeddings table (its owner: the schema
    owner, ``pgvision db upgrade``'s role) builds them; for any other role, and for a model
    without an HNSW index, nothing happens. ``CONCURRENTLY`` on an autocommit connection.
    """
    model = get_model_by_id(conn, model_id)
    if model["index_method"] != "hnsw" or model.get("quantization", "none") == "binary":
        return []
    owner = conn.execute(
        "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_class c WHERE c.oid = %s::regclass",
        (f"pgvision.{embeddings_table(model['kind'])}",),
    ).fetchone()[0]
    if not owner:
        return []
    built = []
    for cid, _ in collections_due(conn, model):
        conn.execute(collection_index_ddl(model, cid, concurrently=conn.autocommit))
        built.append(collection_index_name(model, cid))
    return built
