"""Column storage of the embeddings: the choice made in alembic/versions/0001_schema.py.

Three ``(id bigint, embedding vector)`` tables, no index:

* ``default``: the ``vector`` type's own storage (EXTENDED): a 512-d vector (2,056 bytes) is
  over the TOAST threshold (~2 KB), so every row is compressed (in vain) and moved out of line;
* ``plain``: ``SET STORAGE PLAIN``: always inline, but a row must fit one 8 KB page;
* ``external``: pgvision's choice, ``SET STORAGE EXTERNAL`` + ``toast_tuple_target = 8160``:
  never compressed, inline while it fits a page, out of line only when it does not.

Measured: binary COPY rows/s and exact-scan QPS (``ORDER BY embedding <=> q LIMIT 10``, no
index) at ``--dims`` (default 512), table size with TOAST; then whether ``--big-dims``
(default 2,048) float32 vectors load at all.

Example::

    .venv/bin/python bench/bench_storage.py --rows 50000 --dims 512
"""

from __future__ import annotations

import argparse

import numpy as np
import psycopg

import common

STORAGES = {
    "default": ("", ""),
    "plain": ("", "ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE PLAIN"),
    "external": ("WITH (toast_tuple_target = 8160)", "ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE EXTERNAL"),
}


def create(conn, name: str, dims: int | None = None) -> str:
    t = f"st_{name}"
    with_, alter = STORAGES[name]
    typ = f"vector({dims})" if dims else "vector"
    conn.execute(f"DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id bigint, embedding {typ}) {with_}")
    if alter:
        conn.execute(alter.format(t=t))
    return t


def copy_rows(conn, table: str, emb: np.ndarray, batch: int = 5000) -> None:
    ids = np.arange(1, len(emb) + 1, dtype=np.int64)
    for i in range(0, len(emb), batch):
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f"COPY {table} (id, embedding) FROM STDIN (FORMAT BINARY)") as cp:
            cp.write(common.encode_bare(ids[i:i + batch], emb[i:i + batch]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000, help="vectors per table (default 50,000)")
    ap.add_argument("--dims", type=int, default=512, help="dimension for the speed figures (default 512)")
    ap.add_argument("--queries", type=int, default=5, help="exact-scan queries per repetition (default 5)")
    ap.add_argument("--big-dims", type=int, default=2048, help="dimension of the does-it-load test (default 2,048)")
    common.add_server_args(ap)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((a.rows, a.dims), dtype=np.float32)
    queries = rng.standard_normal((a.queries, a.dims), dtype=np.float32)
    results = {"benchmark": "storage", "args": {k: str(v) for k, v in vars(a).items()}}
    with common.bench_database("storage", a.data_dir, migrate_schema=False) as url:
        conn = common.connect(url)
        results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        conn.execute("SET max_parallel_workers_per_gather = 0")  # one backend, as a search is

        # COPY speed: each repetition recreates the table.
        copy_times = common.interleaved({n: (lambda n=n: copy_rows(conn, f"st_{n}", emb)) for n in STORAGES},
                                        a.reps, before=lambda n: create(conn, n, a.dims))
        sizes = {n: conn.execute(f"SELECT pg_total_relation_size('st_{n}'), pg_relation_size('st_{n}')").fetchone()
                 for n in STORAGES}
        for n in STORAGES:
            conn.execute(f"VACUUM ANALYZE st_{n}")

        def scan(n: str) -> None:
            for q in queries:
                conn.execute(f"SELECT id FROM st_{n} ORDER BY embedding <=> %s LIMIT 10", (q,)).fetchall()

        for n in STORAGES:  # warm the cache once
            scan(n)
        scan_times = common.interleaved({n: (lambda n=n: scan(n)) for n in STORAGES}, a.reps)

        # Does a big vector load?
        big = rng.standard_normal((10, a.big_dims), dtype=np.float32)
        loads = {}
        for n in STORAGES:
            t = create(conn, n)
            try:
                copy_rows(conn, t, big)
                loads[n] = "loads"
            except psycopg.Error as exc:
                loads[n] = "fails: " + str(exc).strip().splitlines()[0]
        conn.close()

    copy_rate = {n: a.rows / common.median(t) for n, t in copy_times.items()}
    qps = {n: a.queries / common.median(t) for n, t in scan_times.items()}
    rows = [[n, copy_rate[n], copy_rate[n] / copy_rate["default"], qps[n], qps[n] / qps["default"],
             f"{sizes[n][0] / 2**20:.0f} MB ({sizes[n][1] / 2**20:.0f} heap)", loads[n]] for n in STORAGES]
    common.print_table(["storage", "COPY rows/s", "vs default", "exact-scan QPS", "vs default", "size (of which heap)",
                        f"{a.big_dims}-d float32"], rows,
                       f"storage of {a.rows:,} x {a.dims} vectors (median of {a.reps}, interleaved, 1 backend)")
    results.update(copy_seconds=copy_times, scan_seconds=scan_times, copy_rows_per_s=copy_rate, exact_qps=qps,
                   sizes_bytes=sizes, big_vectors=loads)
    common.write_results("storage", results)


if __name__ == "__main__":
    main()
