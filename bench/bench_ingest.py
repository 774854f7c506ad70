"""Ingest of vectors: pgvision's loading path against what users would do instead.

Methods, each loading the same N x D float32 vectors (rows/s = N / median seconds):

* ``pgvision``: :func:`pgvision.ingest.pg_copy.copy_image_embeddings` in batches of ``--batch``
  rows, the path of ``pgvision load`` / ``load-vectors``: per batch one transaction with the
  per-model advisory lock, the images upsert (``unnest`` arrays, ``ON CONFLICT``), the
  existence check and a numpy-encoded binary ``COPY`` into ``pgvision.image_embeddings``
  (primary key, ``STORAGE EXTERNAL``, ``toast_tuple_target = 8160``). It writes more than the
  others: an ``images`` row (sha256, uri, label, 3 indexes) per vector.
* ``pgvision-vectors``: the same COPY (:func:`pgvision.ingest.pg_copy.copy_vectors`) into
  ``image_embeddings`` with the image rows already there: the vector part alone.
* ``staging``: COPY into a temporary table, then ``INSERT ... SELECT ... ON CONFLICT DO
  NOTHING`` into ``image_embeddings`` (the design pgvision's loader chose not to use, see
  pg_copy.py): the cost of writing each vector twice.
* (a) ``text-file``: the AnalyticDB tutorial's way: format every vector as text into a file
  (Python string formatting, one line per image ``id|[v1,...]``), then ``COPY`` it (text
  format) into an unindexed ``(id bigint, embedding vector(D))`` table. Slow: measured on
  ``--text-rows`` rows (default 10,000); the ratio is of rows/s.
* (b) ``executemany``: psycopg 3 ``executemany`` of ``INSERT ... VALUES (%s, %s)`` with
  pgvector-python's numpy adapter (DeepFace's pgvector backend inserts row by row), one
  transaction, into the same unindexed table.
* (c) ``bare-copy``: the ceiling: a binary COPY built by numpy in one pass (no per-row
  Python) into an unindexed ``(id bigint, embedding vector(D))`` table with pgvision's
  column storage, same batches and one transaction per batch, no images, no lock, no check.

Goals: pgvision >= 30x (a), >= 2x (b), >= 0.9x (c); "met" only when every interleaved round
reaches the goal, "missed" when none does, else "not shown".

Example::

    .venv/bin/python bench/bench_ingest.py --rows 100000 --dims 512 1000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
import time

import numpy as np

import common  # noqa: E402  (sets sys.path for pgvision)
from pgvision.ingest import pg_copy
from pgvision.registry import ModelSpec, register_model

#: pgvision's goal against each baseline (rows/s ratio).
GOALS = {"text-file": 30.0, "executemany": 2.0, "bare-copy": 0.9}


def records_for(n: int, offset: int = 0) -> list[pg_copy.ImageRecord]:
    return [pg_copy.ImageRecord(hashlib.sha256(f"bench-{i}".encode()).digest(), f"file:///bench/{i}.jpg",
                                f"class{i % 10}", 32, 32) for i in range(offset, offset + n)]


class Methods:
    """The loading methods compared, over one connection and the same vectors (one timed run each)."""

    def __init__(self, url: str, n: int, dims: int, text_rows: int, batch: int) -> None:
        self.conn = conn = common.connect(url)
        conn.execute(f"DROP TABLE IF EXISTS bare, plain_t; "
                     f"CREATE TABLE bare (id bigint, embedding vector({dims})) WITH (toast_tuple_target = 8160); "
                     f"ALTER TABLE bare ALTER COLUMN embedding SET STORAGE EXTERNAL; "
                     f"CREATE TABLE plain_t (id bigint, embedding vector({dims}))")
        self.model_id = register_model(conn, ModelSpec(f"bench-{dims}", "image", dims, "cosine"))
        self.n, self.dims, self.batch = n, dims, batch
        self.emb = np.random.default_rng(dims).standard_normal((n, dims), dtype=np.float32)
        self.ids = np.arange(1, n + 1, dtype=np.int64)
        self.recs = records_for(n)
        self.text_rows = min(text_rows, n)
        self.image_ids = np.zeros(0, dtype=np.int64)

    def chunks(self):
        return ((i, slice(i, i + self.batch)) for i in range(0, self.n, self.batch))

    def reset(self, name: str) -> None:
        conn = self.conn
        conn.execute("TRUNCATE bare, plain_t")
        if name != "pgvision-vectors":
            conn.execute("TRUNCATE pgvision.images CASCADE")
            return
        conn.execute("DELETE FROM pgvision.image_embeddings")
        if conn.execute("SELECT count(*) FROM pgvision.images").fetchone()[0] != self.n:
            conn.execute("TRUNCATE pgvision.images CASCADE")
            for _, s in self.chunks():
                pg_copy.copy_image_embeddings(conn, self.model_id, self.recs[s], self.emb[s])
            conn.execute("DELETE FROM pgvision.image_embeddings")
        conn.execute("VACUUM pgvision.image_embeddings")
        self.image_ids = np.array([r[0] for r in conn.execute(
            "SELECT image_id FROM pgvision.images ORDER BY image_id")], dtype=np.int64)

    def pgvision(self) -> None:
        for _, s in self.chunks():
            pg_copy.copy_image_embeddings(self.conn, self.model_id, self.recs[s], self.emb[s], dims=self.dims)

    def pgvision_vectors(self) -> None:
        for _, s in self.chunks():
            with self.conn.transaction():
                pg_copy.copy_vectors(self.conn, "image_embeddings", "image_id", self.model_id, self.image_ids[s],
                                     self.emb[s])

    def staging(self) -> None:
        conn = self.conn
        for _, s in self.chunks():
            chunk = self.recs[s]
            with conn.transaction():
                pg_copy.lock_model(conn, self.model_id)
                got = pg_copy.upsert_images(conn, chunk)
                iid = np.array([got[r.sha256] for r in chunk], dtype=np.int64)
                conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage (model_id int, image_id bigint, embedding vector) "
                             "ON COMMIT DELETE ROWS")
                with conn.cursor() as cur, cur.copy("COPY stage FROM STDIN (FORMAT BINARY)") as cp:
                    cp.write(pg_copy.encode_copy_binary(self.model_id, iid, self.emb[s]))
                conn.execute("INSERT INTO pgvision.image_embeddings SELECT * FROM stage ON CONFLICT DO NOTHING")

    def text_file(self) -> None:
        # The tutorial's way: a text file written with Python string formatting, then COPY.
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            path = f.name
            for i in range(self.text_rows):
                f.write(f"{i + 1}|[{','.join(str(x) for x in self.emb[i].tolist())}]\n")
        try:
            with self.conn.transaction(), self.conn.cursor() as cur, \
                    cur.copy("COPY plain_t (id, embedding) FROM STDIN (FORMAT text, DELIMITER '|')") as cp, \
                    open(path, "rb") as f:
                while data := f.read(1 << 20):
                    cp.write(data)
        finally:
            os.unlink(path)

    def executemany(self) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany("INSERT INTO plain_t (id, embedding) VALUES (%s, %s)",
                            [(int(self.ids[i]), self.emb[i]) for i in range(self.n)])

    def bare_copy(self) -> None:
        for _, s in self.chunks():
            with self.conn.transaction(), self.conn.cursor() as cur, \
                    cur.copy("COPY bare (id, embedding) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(common.encode_bare(self.ids[s], self.emb[s]))


def run_dims(url: str, n: int, dims: int, text_rows: int, batch: int, reps: int) -> dict:
    m = Methods(url, n, dims, text_rows, batch)
    conn, model_id, recs, emb, tr, reset = m.conn, m.model_id, m.recs, m.emb, m.text_rows, m.reset
    methods = {"pgvision": m.pgvision, "pgvision-vectors": m.pgvision_vectors, "staging": m.staging,
               "text-file": m.text_file, "executemany": m.executemany, "bare-copy": m.bare_copy}
    rows_of = {m: (tr if m == "text-file" else n) for m in methods}
    times = common.interleaved(methods, reps, before=reset)
    rate = {m: rows_of[m] / common.median(t) for m, t in times.items()}

    # Where pgvision's time goes: the steps of copy_image_embeddings, timed one by one.
    stages = profile_pgvision(conn, model_id, recs, emb, batch, reps, reset)
    conn.close()
    return {"rows": n, "text_rows": tr, "dims": dims, "batch": batch,
            "seconds": times, "rows_per_s": rate, "pgvision_stages_s": stages}


def profile_pgvision(conn, model_id, recs, emb, batch, reps, reset) -> dict[str, float]:
    """Median seconds per step of copy_image_embeddings over the whole load."""
    runs = []
    n = len(recs)
    for _ in range(reps):
        reset("pgvision")
        t = dict.fromkeys(["check", "lock+upsert images", "existence check", "encode", "COPY", "commit"], 0.0)
        for i in range(0, n, batch):
            chunk, e = recs[i:i + batch], emb[i:i + batch]
            t0 = time.perf_counter()
            e = pg_copy.check_embeddings(e, e.shape[1], [r.uri for r in chunk])
            t1 = time.perf_counter()
            tx = conn.transaction()
            tx.__enter__()
            pg_copy.lock_model(conn, model_id)
            got, new = pg_copy._upsert_images(conn, chunk)
            iid = np.array([got[r.sha256] for r in chunk], dtype=np.int64)
            t2 = time.perf_counter()
            old = [got[s] for s in {r.sha256 for r in chunk} - new]
            if old:
                list(conn.execute("SELECT image_id FROM pgvision.image_embeddings WHERE model_id = %s "
                                  "AND image_id = ANY(%s)", (model_id, old)))
            t3 = time.perf_counter()
            payload = pg_copy.encode_copy_binary(model_id, iid, e)
            t4 = time.perf_counter()
            with conn.cursor() as cur, cur.copy("COPY pgvision.image_embeddings (model_id, image_id, embedding) "
                                                "FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(payload)
            t5 = time.perf_counter()
            tx.__exit__(None, None, None)
            t6 = time.perf_counter()
            for k, a, b in (("check", t0, t1), ("lock+upsert images", t1, t2), ("existence check", t2, t3),
                            ("encode", t3, t4), ("COPY", t4, t5), ("commit", t5, t6)):
                t[k] += b - a
        runs.append(t)
    return {k: common.median([r[k] for r in runs]) for k in runs[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="vectors per load (default 100,000)")
    ap.add_argument("--dims", type=int, nargs="+", default=[512, 1000], help="dimensions (default 512 1000)")
    ap.add_argument("--text-rows", type=int, default=10_000,
                    help="rows for the slow text-file method (a) (default 10,000; ratios are of rows/s)")
    ap.add_argument("--batch", type=int, default=5000, help="rows per transaction (default 5,000, as load-vectors)")
    common.add_server_args(ap)
    a = ap.parse_args()
    results = {"benchmark": "ingest", "args": {k: str(v) for k, v in vars(a).items()}, "runs": []}
    with common.bench_database("ingest", a.data_dir) as url:
        with common.connect(url) as conn:
            results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        for d in a.dims:
            r = run_dims(url, a.rows, d, a.text_rows, a.batch, a.reps)
            results["runs"].append(r)
            rate = r["rows_per_s"]
            pg = rate["pgvision"]
            n_of = {m: r["text_rows"] if m == "text-file" else r["rows"] for m in r["seconds"]}
            pg_times = r["seconds"]["pgvision"]
            rounds = {m: [(r["rows"] / tp) / (n_of[m] / tm) for tp, tm in zip(pg_times, r["seconds"][m], strict=True)]
                      for m in r["seconds"]}
            r["pgvision_vs_method_by_round"] = rounds
            rows = [[m, n_of[m], common.median(r["seconds"][m]), rate[m], pg / rate[m], common.spread(rounds[m]),
                     common.verdict(rounds[m], GOALS[m]) if m in GOALS else None] for m in r["seconds"]]
            common.print_table(["method", "rows", "median s", "rows/s", "pgvision / method (medians)",
                                "by round: median (min-max)", "goal"], rows,
                               f"ingest {a.rows:,} x {d} float32 (median of {a.reps}, interleaved)")
            total = sum(r["pgvision_stages_s"].values())
            common.print_table(["pgvision step", "s", "share"],
                               [[k, v, f"{100 * v / total:.0f} %"] for k, v in r["pgvision_stages_s"].items()],
                               f"where pgvision's time goes ({a.rows:,} x {d})")
            print(f"goals at {d}-d: vs text-file {pg / rate['text-file']:.1f}x (>= 30), "
                  f"vs executemany {pg / rate['executemany']:.2f}x (>= 2), "
                  f"vs bare COPY {pg / rate['bare-copy']:.2f}x (>= 0.9)")
    common.write_results("ingest", results)


if __name__ == "__main__":
    main()
