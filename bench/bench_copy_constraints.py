"""What pgvision's embeddings table costs a binary COPY: primary key and foreign keys.

The same numpy-built binary COPY of N x D float32 vectors, in batches of 5,000 (one
transaction each), into tables that add one thing at a time:

* ``bare``: ``(model_id int, image_id bigint, embedding vector)``, no index, pgvision's storage
  (EXTERNAL, toast_tuple_target 8160): the ceiling of bench_ingest.py;
* ``+ primary key``: ``PRIMARY KEY (model_id, image_id)``;
* ``+ foreign keys``: and ``REFERENCES`` a models table and an images table (one trigger
  per row per key, each an index probe of the parent);
* ``image_embeddings``: ``pgvision.image_embeddings`` itself (the same three).

Example::

    .venv/bin/python bench/bench_copy_constraints.py --rows 100000 --dims 512
"""

from __future__ import annotations

import argparse

import numpy as np

import common
from pgvision.ingest import pg_copy
from pgvision.registry import ModelSpec, register_model

STORAGE = "WITH (toast_tuple_target = 8160)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="vectors (default 100,000)")
    ap.add_argument("--dims", type=int, default=512, help="dimension (default 512)")
    common.add_server_args(ap)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((a.rows, a.dims), dtype=np.float32)
    results = {"benchmark": "copy_constraints", "args": {k: str(v) for k, v in vars(a).items()}}
    with common.bench_database("copy_constraints", a.data_dir) as url:
        conn = common.connect(url)
        results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        model_id = register_model(conn, ModelSpec("constraints", "image", a.dims, "cosine"))
        conn.execute("INSERT INTO pgvision.images (sha256, uri) SELECT sha256(g::text::bytea), 'x' || g "
                     "FROM generate_series(1, %s) g", (a.rows,))
        ids = np.array([r[0] for r in conn.execute("SELECT image_id FROM pgvision.images ORDER BY image_id")],
                       dtype=np.int64)
        conn.execute(f"""
            CREATE TABLE t_bare (model_id int, image_id bigint, embedding vector) {STORAGE};
            CREATE TABLE t_pk (model_id int, image_id bigint, embedding vector,
                               PRIMARY KEY (model_id, image_id)) {STORAGE};
            CREATE TABLE t_fk (model_id int REFERENCES pgvision.models, image_id bigint REFERENCES pgvision.images,
                               embedding vector, PRIMARY KEY (model_id, image_id)) {STORAGE};""")
        for t in ("t_bare", "t_pk", "t_fk"):
            conn.execute(f"ALTER TABLE {t} ALTER COLUMN embedding SET STORAGE EXTERNAL")
        tables = {"bare": "t_bare", "+ primary key": "t_pk", "+ foreign keys": "t_fk",
                  "image_embeddings": "pgvision.image_embeddings"}

        def before(name: str) -> None:
            conn.execute(f"TRUNCATE {tables[name]}")

        def copy(table: str):
            def run() -> None:
                for i in range(0, a.rows, 5000):
                    with conn.transaction(), conn.cursor() as cur, \
                            cur.copy(f"COPY {table} (model_id, image_id, embedding) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.write(pg_copy.encode_copy_binary(model_id, ids[i:i + 5000], emb[i:i + 5000]))
            return run

        times = common.interleaved({n: copy(t) for n, t in tables.items()}, a.reps, before=before)
        conn.close()
    rate = {n: a.rows / common.median(t) for n, t in times.items()}
    rows = [[n, common.median(times[n]), rate[n], rate[n] / rate["bare"]] for n in tables]
    common.print_table(["table", "median s", "rows/s", "vs bare"], rows,
                       f"binary COPY of {a.rows:,} x {a.dims} (median of {a.reps}, interleaved)")
    results.update(seconds=times, rows_per_s=rate)
    common.write_results("copy_constraints", results)


if __name__ == "__main__":
    main()
