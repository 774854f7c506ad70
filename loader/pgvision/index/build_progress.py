"""Index builds at scale: a memory check before, a progress bar during, size and statistics after.

- :func:`hnsw_graph_bytes` estimates the in-memory HNSW graph pgvector builds (it is fast
  only while the graph fits ``maintenance_work_mem``: pgvector README, "Index Build Time");
  :func:`build_memory` raises the building session's ``maintenance_work_mem`` to the graph's
  size when the server's memory allows it, and :func:`memory_warning` turns a graph that
  still will not fit into one line with the fix.
- :class:`ProgressWatcher` polls ``pg_stat_progress_create_index`` (PostgreSQL docs,
  "Progress Reporting") from a second connection while the build runs on the first, and
  shows phase and tuples done / total in a tqdm bar.
- :func:`index_mb` and :func:`analyze` report the index size and refresh the planner's
  statistics (an ``identify`` call took 272 ms instead of 9 ms on 30k faces right after a
  bulk load, before ANALYZE).

Warnings go to the ``pgvision.index.build_progress`` logger; with no logging set up, Python
prints WARNING records on stderr as the bare message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgvision.registry import embeddings_table

log = logging.getLogger(__name__)

#: Bytes of one graph element besides its vector and neighbour lists: pgvector's
#: ``HnswElementData`` (10 heap TIDs, level, locks, pointers) plus palloc headers.
ELEMENT_OVERHEAD = 112
#: Bytes of one neighbour candidate in memory (``HnswCandidate``: pointer, float distance,
#: flag, padded) and of a neighbour array header.
CANDIDATE_BYTES = 16
ARRAY_HEADER = 16
#: ``effective_cache_size`` is 3/4 of the machine's memory after ``pgvision db tune`` (pgtune).
CACHE_SHARE_OF_MEMORY = 0.75
#: Share of the memory left beside ``shared_buffers`` that one build may take for its graph
#: (:func:`build_memory`): the OS page cache keeps the table the build reads and the rest.
BUILD_MEMORY_SHARE = 0.25


def hnsw_graph_bytes(rows: int, dims: int, m: int, *, halfvec: bool = False) -> int:
    """Memory an HNSW build needs to keep the whole graph in ``maintenance_work_mem``.

    Per element, from pgvector's in-memory layout (``src/hnsw.h``): the vector (8-byte
    header + 4 bytes a dim, 2 for halfvec), ``2 m`` neighbours on layer 0 and ``m`` on each
    upper layer; levels are drawn with ``ml = 1/ln m``, so an element has on average
    ``1/(m - 1)`` upper layers (Malkov & Yashunin 2018). Checked against pgvector's own
    NOTICE "hnsw graph no longer fits into maintenance_work_mem after N tuples" in
    tests/test_index_progress.py (about 2.6 KB a 512-d vector in docs/benchmarks.md).

    Args:
        rows: vectors to index; dims: their dimension; m: HNSW ``m``.
        halfvec: the index expression casts to halfvec.

    Returns:
        Bytes (int).
    """
    value = 8 + dims * (2 if halfvec else 4)
    upper = 1 / (m - 1)
    neighbours = (2 * m + upper * m) * CANDIDATE_BYTES + (1 + upper) * ARRAY_HEADER
    return int(rows * (ELEMENT_OVERHEAD + value + neighbours))


def _setting_bytes(conn: psycopg.Connection, name: str) -> int:
    setting, unit = conn.execute("SELECT setting, unit FROM pg_settings WHERE name = %s", (name,)).fetchone()
    units = {"kB": 1024, "8kB": 8192, "MB": 1024 * 1024, "B": 1, None: 1}
    return int(setting) * units.get(unit, 1)


def _graph_need(model: dict[str, Any], rows: int) -> int | None:
    """Bytes of the model's HNSW graph for ``rows`` vectors (:func:`hnsw_graph_bytes`); None for no HNSW build."""
    if model["index_method"] != "hnsw" or rows == 0:
        return None
    halfvec = model["dims"] > 2000 or model.get("quantization") == "halfvec"
    return hnsw_graph_bytes(rows, model["dims"], model["hnsw_m"], halfvec=halfvec)


def server_memory_bytes(conn: psycopg.Connection) -> int:
    """The database server's memory as its settings tell it: ``effective_cache_size`` x 4/3 (bytes)."""
    return int(_setting_bytes(conn, "effective_cache_size") / CACHE_SHARE_OF_MEMORY)


def build_budget(memory_bytes: int, shared_buffers_bytes: int, *, declared: bool) -> int:
    """Bytes one index build may take for its graph: :data:`BUILD_MEMORY_SHARE` of the memory beside shared_buffers.

    Args:
        memory_bytes: the server's memory (:func:`server_memory_bytes`).
        shared_buffers_bytes: its ``shared_buffers``.
        declared: ``effective_cache_size`` was set (by ``pgvision db tune``, a configuration
            file or the session), not PostgreSQL's built-in 4GB. An undeclared value says
            nothing of the machine, so the budget is 0: the setting is never raised on a guess.

    Returns:
        Bytes (>= 0).
    """
    if not declared:
        return 0
    return max(0, int(BUILD_MEMORY_SHARE * (memory_bytes - shared_buffers_bytes)))


def build_memory(conn: psycopg.Connection, model: dict[str, Any], rows: int) -> int | None:
    """Raise this session's ``maintenance_work_mem`` so the HNSW graph fits, when memory allows.

    pgvector builds fast only while the graph fits ``maintenance_work_mem`` (README, "Index
    Build Time"; past it the rest is inserted on disk). A tuned server gives it RAM/8
    (:mod:`pgvision.server.tuning`), which 1M x 512 at m 32 (about 3.0 GB) just outgrows
    on 24 GB. The session value is raised to the graph's estimate (:func:`hnsw_graph_bytes`,
    rounded up to a MB) when that fits :func:`build_budget` (a quarter of the memory beside
    ``shared_buffers``, and only on a server whose memory was declared); otherwise it is
    left for :func:`memory_warning` to report. Call :func:`restore_memory` with the result after.

    Args:
        conn: the connection that will build; model: registry row; rows: vectors to index.

    Returns:
        The previous session value in bytes when it was raised, else None.
    """
    need = _graph_need(model, rows)
    if need is None:
        return None
    have = _setting_bytes(conn, "maintenance_work_mem")
    declared = conn.execute(
        "SELECT source <> 'default' FROM pg_settings WHERE name = 'effective_cache_size'"
    ).fetchone()[0]
    budget = build_budget(server_memory_bytes(conn), _setting_bytes(conn, "shared_buffers"), declared=declared)
    if need <= have or need > budget:
        return None
    need_mb = -(-need // (1024 * 1024))
    conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (f"{need_mb}MB",))
    log.info("maintenance_work_mem raised to %s MB for this build (graph of %s x %s, m %s)",
             need_mb, rows, model["dims"], model["hnsw_m"])
    return have


def restore_memory(conn: psycopg.Connection, previous: int | None) -> None:
    """Put back the ``maintenance_work_mem`` that :func:`build_memory` raised (no-op for None).

    In a failed transaction nothing is run: its rollback undoes the raise (a ``SET`` is transactional).
    """
    failed = conn.closed or conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
    if previous is not None and not failed:
        conn.execute("SELECT set_config('maintenance_work_mem', %s, false)", (f"{previous // 1024}kB",))


def memory_warning(conn: psycopg.Connection, model: dict[str, Any], rows: int) -> str | None:
    """One line when the model's HNSW graph will not fit ``maintenance_work_mem``, else None.

    Args:
        conn: the connection that will build (its session value counts).
        model: registry row (``index_method``, ``dims``, ``hnsw_m``, ``name``).
        rows: vectors the build will read.
    """
    need = _graph_need(model, rows)
    if need is None:
        return None
    have = _setting_bytes(conn, "maintenance_work_mem")
    if need <= have:
        return None
    mb = 1024 * 1024
    shown = conn.execute("SHOW maintenance_work_mem").fetchone()[0]
    return (
        f"the HNSW graph of {model['name']!r} ({rows} x {model['dims']}, m {model['hnsw_m']}) needs about "
        f"{need / mb:,.1f} MB but maintenance_work_mem is {shown}: the build will be much slower; "
        f"fix: pgvision db tune (sizes the server to its machine), or SET maintenance_work_mem = "
        f"'{-(-need // mb)}MB' before building"
    )


class ProgressWatcher:
    """Poll ``pg_stat_progress_create_index`` for one backend from a second connection.

    Use as a context manager around the ``CREATE INDEX`` on ``conn``::

        with ProgressWatcher(conn, show=True):
            conn.execute(ddl)

    Args:
        conn: the connection that builds (its ``backend_pid`` is watched).
        show: draw a tqdm bar on stderr (phase; tuples done / total).
        on_progress: called with each row seen, a dict with ``phase``, ``tuples_done``,
            ``tuples_total``, ``blocks_done``, ``blocks_total``.
        poll_seconds: time between polls.
        rows: rows the build reads, the bar's total (pgvector reports ``tuples_done`` but
            leaves ``tuples_total`` 0; without ``rows`` the bar counts heap blocks).

    A second connection that cannot be opened (a server at its connection limit) only
    costs the bar: the build goes on without it.
    """

    def __init__(self, conn: psycopg.Connection, *, show: bool = True,
                 on_progress: Callable[[dict[str, Any]], None] | None = None, poll_seconds: float = 0.5,
                 desc: str = "building index", rows: int | None = None):
        self.pid = conn.info.backend_pid
        params = {"password": conn.info.password} if conn.info.password else {}
        self.conninfo = make_conninfo(conn.info.dsn, **params)
        self.show, self.on_progress, self.poll_seconds, self.desc = show, on_progress, poll_seconds, desc
        self.rows = rows
        self.phases: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ProgressWatcher:
        if self.show or self.on_progress:
            self._thread = threading.Thread(target=self._run, name="index-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        from tqdm import tqdm

        try:
            watch = psycopg.connect(self.conninfo, autocommit=True, application_name="pgvision index progress")
        except psycopg.Error as exc:
            log.info("no progress bar for the index build: %s", exc)
            return
        bar = tqdm(total=0, unit="tuple", desc=self.desc, disable=not self.show, leave=False)
        try:
            with watch:
                while not self._stop.is_set():
                    row = watch.execute(
                        "SELECT phase, tuples_done, tuples_total, blocks_done, blocks_total "
                        "FROM pg_stat_progress_create_index WHERE pid = %s",
                        (self.pid,),
                    ).fetchone()
                    if row is not None:
                        seen = dict(
                            zip(
                                ("phase", "tuples_done", "tuples_total", "blocks_done", "blocks_total"),
                                row,
                                strict=True,
                            )
                        )
                        if not self.phases or self.phases[-1] != seen["phase"]:
                            self.phases.append(seen["phase"])
                        if self.on_progress:
                            self.on_progress(seen)
                        bar.set_description(f"{self.desc}: {seen['phase']}", refresh=False)
                        if self.rows or seen["tuples_total"]:
                            total, done = self.rows or seen["tuples_total"], seen["tuples_done"]
                            bar.unit = "tuple"
                        else:
                            total, done = seen["blocks_total"] or 0, seen["blocks_done"]
                            bar.unit = "block"
                        bar.total, bar.n = total, min(done or 0, total)
                        bar.refresh()
                    self._stop.wait(self.poll_seconds)
        except psycopg.Error as exc:  # the server went away: the build reports it itself
            log.info("index progress stopped: %s", exc)
        finally:
            bar.close()


def build(conn: psycopg.Connection, model: dict[str, Any], ddl: sql.Composable, *, rows: int,
          progress: bool = False, on_progress: Callable[[dict[str, Any]], None] | None = None,
          poll_seconds: float = 0.5) -> float:
    """Run a model's ``CREATE INDEX``: memory raised or checked first, progress while it runs, ANALYZE after.

    Args:
        conn: building connection; model: registry row; ddl: from ``indexes.index_ddl``.
        rows: vectors stored for the model (for the memory check).
        progress: show the tqdm bar; on_progress: see :class:`ProgressWatcher`.

    Returns:
        Build seconds (wall clock, the ``CREATE INDEX`` alone).
    """
    previous = build_memory(conn, model, rows)
    warning = memory_warning(conn, model, rows)
    if warning:
        log.warning(warning)
    t = time.perf_counter()
    try:
        with ProgressWatcher(conn, show=progress, on_progress=on_progress, poll_seconds=poll_seconds,
                             desc=f"indexing {model['name']}", rows=rows):
            conn.execute(ddl)
    finally:
        restore_memory(conn, previous)
    seconds = time.perf_counter() - t
    analyze(conn, embeddings_table(model["kind"]))
    return seconds


def index_mb(conn: psycopg.Connection, name: str | None) -> float | None:
    """Size of ``pgvision.<name>`` in MB (``pg_relation_size``), None without an index."""
    if name is None:
        return None
    size = conn.execute("SELECT pg_relation_size(to_regclass(%s))", (f"pgvision.{name}",)).fetchone()[0]
    return None if size is None else size / (1024 * 1024)


def analyze(conn: psycopg.Connection, *tables: str) -> None:
    """``ANALYZE`` pgvision tables, so plans use statistics of what was just loaded."""
    conn.execute(sql.SQL("ANALYZE {}").format(
        sql.SQL(", ").join(sql.SQL("pgvision.{}").format(sql.Identifier(t)) for t in tables)
    ))
