"""Reads spread over hot-standby replicas: search QPS, and replication lag during a bulk load.

One embedded primary (its own data directory, ``--data-dir``, never the user's) and two
streaming replicas made by :func:`pgvision.server.replicas.add` (``pg_basebackup -R -C -S``).

1. **Search QPS.** ``--rows`` x ``--dims`` clustered vectors (cosine, HNSW m = 16,
   ef_construction = 64) are loaded on the primary and replayed on both replicas.
   ``--clients`` threads, each with its own connection, run the same ``--queries`` held-out
   queries through ``pgvision.search_images(q, 10)``:

   * ``primary``: every client connects to the primary;
   * ``primary+2``: client i connects to server i mod 3 (primary, r1, r2), as a libpq
     multi-host URL with ``load_balance_hosts=random`` spreads them on average (round-robin
     here, so the split is the same in every repetition).

   QPS = clients x queries / median wall seconds of ``--reps`` interleaved repetitions.
   Both sides return the same rows (checked on the first query).
2. **Lag during a bulk load.** ``--bulk-rows`` x ``--dims`` more vectors are loaded on the
   primary (the loader's COPY path, batches of 5000, into the indexed table) while a thread
   samples ``pg_stat_replication`` every 0.1 s: replay lag in bytes
   (``pg_current_wal_lsn() - replay_lsn``) and seconds (``replay_lag``) per replica. Then
   the time until both replicas have replayed the load.

The client threads, the primary and both replicas share this machine's cores: on a 2-core
machine no speed-up is expected (the replicas add processes, not CPUs). Replicas pay off when
each runs on its own machine or when one machine has idle cores the primary cannot use.

Example::

    .venv/bin/python bench/bench_replicas.py --rows 20000 --dims 128 --bulk-rows 50000
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import psycopg

import common
from pgvision import migrate
from pgvision.index import ddl
from pgvision.ingest import pg_copy
from pgvision.registry import ModelSpec, register_model
from pgvision.server import embedded, replicas
from pgvision.server.connection import connect

K = 10


def load(url: str, name: str, x: np.ndarray, batch: int = 5000) -> None:
    """Store ``x`` under model ``name`` (cosine) through the loader's COPY path."""
    with common.connect(url) as conn:
        model_id = register_model(conn, ModelSpec(name, "image", x.shape[1], "cosine", normalized=True))
        recs = [pg_copy.ImageRecord(hashlib.sha256(f"{name}-{i}".encode()).digest(), f"bench:{name}/{i}", None)
                for i in range(len(x))]
        for i in range(0, len(x), batch):
            pg_copy.copy_image_embeddings(conn, model_id, recs[i:i + batch], x[i:i + batch])


def search_run(urls: list[str], queries: np.ndarray, model: str) -> float:
    """Every client (one per URL) runs all queries; returns wall seconds."""
    conns = [connect(u, autocommit=True) for u in urls]  # common.connect writes (CREATE EXTENSION)
    try:
        for c in conns:  # warm the connection (pgvector loaded, plan cached)
            c.execute("SELECT count(*) FROM pgvision.search_images(%s, %s, model => %s)", (queries[0], K, model))
        barrier = threading.Barrier(len(conns) + 1)

        def client(conn):
            barrier.wait()
            for q in queries:
                conn.execute("SELECT image_id FROM pgvision.search_images(%s, %s, model => %s)",
                             (q, K, model)).fetchall()

        threads = [threading.Thread(target=client, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        return time.perf_counter() - t0
    finally:
        for c in conns:
            c.close()


def sample_lag(primary_url: str, stop: threading.Event, out: list[tuple[float, str, int, float]]) -> None:
    """Append (t, slot, lag bytes, replay_lag seconds) every 0.1 s until ``stop`` is set."""
    t0 = time.perf_counter()
    with psycopg.connect(primary_url, autocommit=True) as conn:
        while not stop.is_set():
            rows = conn.execute(
                "SELECT s.slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), r.replay_lsn)::bigint, "
                "coalesce(extract(epoch FROM r.replay_lag), 0)::float8 "
                "FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid").fetchall()
            now = time.perf_counter() - t0
            out.extend((now, slot, int(b), float(s)) for slot, b, s in rows)
            stop.wait(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/pgvision-bench/replicas"),
                    help="directory for the primary and its replicas "
                         "(emptied first; default /tmp/pgvision-bench/replicas)")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per side, median reported (default 5)")
    ap.add_argument("--rows", type=int, default=20000, help="vectors searched (default 20000)")
    ap.add_argument("--dims", type=int, default=128, help="dimensions (default 128)")
    ap.add_argument("--queries", type=int, default=100, help="queries per client per repetition (default 100)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    ap.add_argument("--bulk-rows", type=int, default=50000, help="rows of the bulk load for lag (default 50000)")
    a = ap.parse_args()

    top = a.data_dir
    shutil.rmtree(top, ignore_errors=True)
    top.mkdir(parents=True)
    top.chmod(0o755)
    primary = top / "data"
    results: dict = {"args": vars(a) | {"data_dir": str(top)}}
    try:
        url = embedded.start(primary)
        migrate.upgrade(url)
        with common.connect(url) as conn:
            results["machine"] = info = common.machine(conn)
        common.print_machine(info)

        x = common.clustered(a.rows + a.queries, a.dims, max(1, a.rows // 100), seed=0)
        x = common.normalize(x)
        data, queries = x[:a.rows], x[a.rows:]
        t = time.perf_counter()
        load(url, "bench", data)
        with common.connect(url) as conn:
            ddl.set_index(conn, "bench", method="hnsw", m=16, ef_construction=64)
        print(f"loaded {a.rows} x {a.dims} + HNSW in {time.perf_counter() - t:.1f} s")

        r1 = replicas.add("r1", primary=primary)
        r2 = replicas.add("r2", primary=primary)
        for r in (r1, r2):
            replicas.wait_for_replay(url, r.url)
        servers = [url, r1.url, r2.url]
        same = []
        for u in servers:
            with connect(u, autocommit=True) as conn:
                same.append(conn.execute("SELECT image_id FROM pgvision.search_images(%s, %s, model => 'bench')",
                                         (queries[0], K)).fetchall())
        assert same[0] == same[1] == same[2], "a replica answered other rows than the primary"

        sides = {
            "primary": [url] * a.clients,
            "primary+2": [servers[i % 3] for i in range(a.clients)],
        }
        times = common.interleaved({n: (lambda u=u: search_run(u, queries, "bench")) for n, u in sides.items()},
                                   a.reps)
        n = a.clients * len(queries)
        qps = {name: n / common.median(ts) for name, ts in times.items()}
        common.print_table(
            ["servers", "clients", "queries", "median s", "QPS", "ratio"],
            [[name, a.clients, n, common.median(times[name]), qps[name], qps[name] / qps["primary"]]
             for name in sides],
            title=f"search_images(q, {K}) on {a.rows} x {a.dims} (HNSW), {a.reps} interleaved reps")
        results["search"] = {"qps": qps, "seconds": times}

        bulk = common.normalize(common.clustered(a.bulk_rows, a.dims, max(1, a.bulk_rows // 100), seed=1))
        samples: list = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_lag, args=(url, stop, samples))
        with psycopg.connect(url) as conn:
            lsn0 = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        sampler.start()
        t = time.perf_counter()
        try:
            load(url, "bench", bulk)  # same model: into the HNSW-indexed partition
        finally:
            load_s = time.perf_counter() - t
            with psycopg.connect(url) as conn:
                wal_bytes = int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
                                             (lsn0,)).fetchone()[0])
        catch_up = max(replicas.wait_for_replay(url, r.url, timeout=600) for r in (r1, r2))
        stop.set()
        sampler.join()
        rows = []
        lag: dict = {}
        for slot in ("r1", "r2"):
            b = [s[2] for s in samples if s[1] == slot]
            sec = [s[3] for s in samples if s[1] == slot]
            lag[slot] = {"bytes_max": max(b, default=0), "bytes_median": statistics.median(b) if b else 0,
                         "seconds_max": max(sec, default=0.0), "seconds_median": statistics.median(sec) if sec else 0}
            rows.append([slot, len(b), lag[slot]["bytes_median"], lag[slot]["bytes_max"],
                         lag[slot]["seconds_median"], lag[slot]["seconds_max"]])
        common.print_table(["replica", "samples", "lag bytes median", "lag bytes max", "lag s median", "lag s max"],
                           rows, title=f"replication lag while loading {a.bulk_rows} x {a.dims} on the primary "
                                       f"({load_s:.1f} s, {a.bulk_rows / load_s:,.0f} rows/s); both replicas caught up "
                                       f"{catch_up:.2f} s after the load ended; {wal_bytes / 2**20:.0f} MiB of WAL")
        results["lag"] = lag | {"load_s": load_s, "catch_up_s": catch_up, "wal_bytes": wal_bytes}
        common.write_results("bench_replicas", results)
        print("note: the primary, both replicas and the client threads share this machine's "
              f"{info.get('cores', '?')} cores: no speed-up is expected here.")
    finally:
        for r in replicas.list_replicas(primary):
            replicas.stop(r.name, primary)
        embedded.stop(primary)
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
