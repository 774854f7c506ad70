"""Rebuild a model's HNSW index to reach its target recall, while searches use the old one.

``pgvision db index MODEL --rebuild-to-target`` runs :func:`rebuild_to_target`:

1. the shape: the one given (``m``, ``ef_construction``, ``quantization``), else the one
   the model's row count calls for (:func:`pgvision.index.shape.choose_shape`);
2. the new index is built ``CONCURRENTLY`` under another name (``<index>_rebuild``), next
   to the old one: loads and searches go on, searches served by the old index (the
   model's row, which the search functions read, still describes it);
3. the swap, in one transaction: the model's row gets the new shape, the old index is
   dropped and the new one renamed to the old name. The models trigger rewrites the
   search statements and the model's view in the same transaction, so a search sees
   either the old index and statements or the new ones, never a mix. ``DROP INDEX`` takes
   the table's ACCESS EXCLUSIVE lock for the moment of the swap; it waits at most
   :data:`SWAP_LOCK_TIMEOUT` for running queries, and a swap that times out leaves both
   indexes as they were (run the command again);
4. the ef_search that reaches the target is measured and stored
   (:func:`pgvision.index.recall_target.choose_setting`).

A process killed at any point (kill -9 included) leaves the old index in place and in use:
before the swap the new index is only an extra index, valid or INVALID; the swap is one
transaction. The building session sets ``client_connection_check_interval`` so that the
server stops a build whose client is gone, and the next run drops a leftover
``<index>_rebuild`` before it starts (PostgreSQL docs, "Building Indexes Concurrently").
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pgvision.errors import InvalidValue
from pgvision.index import build_progress, ddl, recall_target
from pgvision.index.shape import IndexShape, choose_shape, server_memory_bytes
from pgvision.registry import get_model, get_model_by_id

#: Suffix of the index built beside the old one.
SUFFIX = "_rebuild"
#: Longest wait for the table lock of the swap (PostgreSQL ``lock_timeout`` syntax).
SWAP_LOCK_TIMEOUT = "30s"
#: How often the server checks that the building client is still there.
CLIENT_CHECK_INTERVAL = "1s"


@dataclass
class Rebuilt:
    """What :func:`rebuild_to_target` did.

    Attributes:
        index: the index's name (the old name, now on the new index).
        shape: the shape built.
        rows: vectors indexed.
        build_s: seconds of the ``CREATE INDEX CONCURRENTLY`` (wall clock).
        swap_s: seconds of the swap transaction.
        index_mb: the new index's size in MB.
        choice: the ef_search chosen for the target (None below
            :data:`pgvision.index.recall_target.APPLY_FROM_ROWS` rows without a target).
    """

    index: str
    shape: IndexShape
    rows: int
    build_s: float
    swap_s: float
    index_mb: float | None
    choice: recall_target.Choice | None

    def format(self) -> str:
        """Two lines for the CLI: what was built, then the recall setting chosen."""
        quant = (
            "" if self.shape.quantization == "none" else f", {self.shape.quantization}"
        )
        text = (
            f"{self.index}: rebuilt with m {self.shape.m}, ef_construction {self.shape.ef_construction}{quant} "
            f"({self.shape.reason}); {self.rows:,} rows, {self.index_mb or 0:.1f} MB, built in {self.build_s:.1f} s "
            f"while the old index served searches, swapped in {self.swap_s:.2f} s"
        )
        return text + (
            "\n" + recall_target.describe(self.choice) if self.choice else ""
        )


def _drop_leftover(conn: psycopg.Connection, name: str) -> None:
    conn.execute(
        sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS pgvision.{}").format(
            sql.Identifier(name)
        )
    )


def rebuild_to_target(
    conn: psycopg.Connection,
    model_name: str,
    *,
    m: int | None = None,
    ef_construction: int | None = None,
    quantization: str | None = None,
    target: float | None = None,
    progress: bool = False,
) -> Rebuilt:
    """Build MODEL's HNSW index anew beside the old one, swap them atomically, choose ef_search.

    Args:
        conn: an autocommit connection of the schema owner (``CREATE INDEX CONCURRENTLY``
            runs outside a transaction; the swap needs the table owner's rights).
        model_name: a registered model with an HNSW index method.
        m, ef_construction: HNSW shape; None = the shape rule's (both or neither
            make the model's shape ``manual`` / ``auto``).
        quantization: ``none``, ``halfvec`` or ``binary``; None = the shape rule's (a binary
            model stays binary).
        target: recall@10 wanted (0, 1]; None = the model's target, else 0.95 from
            10,000 rows (as ``pgvision db index``).
        progress: show the build's progress bar.

    Returns:
        :class:`Rebuilt`.

    Raises:
        pgvision.errors.InvalidValue: not an autocommit connection, a model whose method is
            not HNSW, an unknown quantization, or ef_construction < 2 m.
        pgvision.errors.UnknownModel: no such model.
        psycopg.errors.LockNotAvailable: the swap waited :data:`SWAP_LOCK_TIMEOUT` for the
            table; both indexes are as they were.
    """
    if not conn.autocommit:
        raise InvalidValue(
            "rebuild_to_target needs an autocommit connection (CREATE INDEX CONCURRENTLY)"
        )
    if quantization not in (None, *ddl.QUANTIZATIONS):
        raise InvalidValue(
            f"unknown quantization {quantization!r}: use one of {', '.join(ddl.QUANTIZATIONS)}"
        )
    model = get_model(conn, model_name)
    if model["index_method"] != "hnsw":
        raise InvalidValue(
            f"model {model_name!r} has index method {model['index_method']!r}: --rebuild-to-target "
            f"rebuilds HNSW indexes; run pgvision db index {model_name} --method hnsw first"
        )
    rows = ddl.stored_rows(conn, model)
    rule = choose_shape(rows, model["dims"], server_memory_bytes(conn))
    given = m is not None or ef_construction is not None or quantization is not None
    reason = "as given" if given else rule.reason
    if quantization is None and model["quantization"] == "binary":
        quantization = "binary"  # chosen by hand: the rule does not undo it
        reason += "; binary kept"
    manual = given or quantization == "binary"
    shape = IndexShape(
        m or rule.m,
        ef_construction or rule.ef_construction,
        quantization or rule.quantization,
        reason,
    )
    if shape.ef_construction < 2 * shape.m:
        raise InvalidValue(
            f"ef_construction must be at least 2 x m = {2 * shape.m}, got {shape.ef_construction}: "
            f"pass --ef-construction {2 * shape.m} or more"
        )
    old_name = ddl.index_name(model)
    new_name = old_name + SUFFIX
    planned = {
        **model,
        "hnsw_m": shape.m,
        "hnsw_ef_construction": shape.ef_construction,
        "quantization": shape.quantization,
    }
    statement = ddl.index_ddl(planned, concurrently=True, name=new_name)
    conn.execute(
        "SELECT set_config('client_connection_check_interval', %s, false)",
        (CLIENT_CHECK_INTERVAL,),
    )
    _drop_leftover(conn, new_name)
    waited = 0.0
    while not conn.execute(
        "SELECT pg_try_advisory_lock(%s, %s)", (ddl.INDEX_LOCK_CLASS, model["model_id"])
    ).fetchone()[0]:
        if waited >= ddl.INDEX_LOCK_TIMEOUT_S:
            from pgvision.errors import LockTimeout

            raise LockTimeout(
                f"the index of model {model_name!r} is being built by another session: "
                "wait for it, then run the command again"
            )
        time.sleep(0.2)
        waited += 0.2
    try:
        try:
            build_s = build_progress.build(
                conn, planned, statement, rows=rows, progress=progress
            )
        except psycopg.Error:
            if not conn.closed:
                _drop_leftover(conn, new_name)
            raise
        swap_s = _swap(conn, model, shape, manual, old_name, new_name)
    finally:
        if not conn.closed:
            conn.execute(
                "SELECT pg_advisory_unlock(%s, %s)",
                (ddl.INDEX_LOCK_CLASS, model["model_id"]),
            )
    model = get_model_by_id(conn, model["model_id"])
    if target is None:
        target = (
            float(model["target_recall"])
            if model["target_recall"] is not None
            else (
                recall_target.DEFAULT_TARGET
                if rows >= recall_target.APPLY_FROM_ROWS
                else None
            )
        )
    choice = recall_target.choose_setting(conn, model_name, target) if target else None
    return Rebuilt(
        old_name,
        shape,
        rows,
        build_s,
        swap_s,
        build_progress.index_mb(conn, old_name),
        choice,
    )


def _swap(
    conn: psycopg.Connection,
    model: dict[str, Any],
    shape: IndexShape,
    manual: bool,
    old_name: str,
    new_name: str,
) -> float:
    """Drop the old index, rename the new one, store the shape: one transaction. Returns seconds."""
    t = time.perf_counter()
    with conn.transaction():
        conn.execute(
            "SELECT set_config('lock_timeout', %s, true)", (SWAP_LOCK_TIMEOUT,)
        )
        conn.execute(
            sql.SQL("DROP INDEX IF EXISTS pgvision.{}").format(sql.Identifier(old_name))
        )
        conn.execute(
            sql.SQL("ALTER INDEX pgvision.{} RENAME TO {}").format(
                sql.Identifier(new_name), sql.Identifier(old_name)
            )
        )
        # The models trigger rewrites the search statements and the view in this transaction.
        conn.execute(
            "UPDATE pgvision.models SET hnsw_m = %s, hnsw_ef_construction = %s, quantization = %s, index_shape = %s "
            "WHERE model_id = %s",
            (
                shape.m,
                shape.ef_construction,
                shape.quantization,
                "manual" if manual else "auto",
                model["model_id"],
            ),
        )
    return time.perf_counter() - t


__all__ = ["SUFFIX", "SWAP_LOCK_TIMEOUT", "Rebuilt", "rebuild_to_target"]
