"""Identification: latency of ``identify()`` as the gallery grows, against brute force in Python.

For each size N (``--sizes``) and dimension (``--dims``): N enrolled synthetic faces of N/10
identities (10 faces each, clustered around one random unit centre per identity), stored
through pgvision's COPY path (``images``, ``identities``, ``faces``, ``face_embeddings``),
indexed by the model's HNSW index (m = 16, ef_construction = 64). 128-d faces use L2 (as
dlib), 512-d faces cosine (as FaceNet). Probes are new faces of enrolled identities.

* ``identify(q, model => ...)``: pgvision's SQL API, one call per probe, wall-clock latency
  seen by the client (round trip included);
* brute force: what face-recognition scripts do (face_recognition.face_distance / DeepFace's
  default pulls every row): every enrolled vector compared in Python, here with numpy on a
  matrix already in memory (the most favourable form), the identity of each face, then the
  same rule as identify v2 (an identity's distance = min(nearest face, distance to its mean
  template), templates precomputed once).

Reported per size: HNSW build seconds, index MB, identify p50/p99 ms, brute-force p50/p99 ms,
agreement of the best identity; a plot of their growth. Latencies are pooled over ``--reps``
interleaved rounds of ``--probes`` probes.

Example::

    .venv/bin/python bench/bench_identify.py --sizes 10000 100000 --dims 128 512
    .venv/bin/python bench/bench_identify.py --sizes 1000000 --dims 128      # optional, long
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import common
from pgvision.index import ddl
from pgvision.ingest import pg_copy
from pgvision.registry import ModelSpec, register_model

FACES_PER_IDENTITY = 10


def gallery(n: int, dims: int, probes: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(faces (n, d), identity index of each, probe faces, true identity of each probe)."""
    rng = np.random.default_rng(seed)
    ids_n = max(2, n // FACES_PER_IDENTITY)
    centres = rng.standard_normal((ids_n, dims)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    who = np.repeat(np.arange(ids_n), FACES_PER_IDENTITY)[:n]
    noise = 0.25 / np.sqrt(dims)  # within-person spread, per dimension
    x = np.empty((n, dims), dtype=np.float32)
    for i in range(0, n, 100_000):
        j = min(n, i + 100_000)
        x[i:j] = centres[who[i:j]] + rng.standard_normal((j - i, dims), dtype=np.float32) * noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pw = rng.integers(0, ids_n, probes)
    p = centres[pw] + rng.standard_normal((probes, dims), dtype=np.float32) * noise
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return x, who, p.astype(np.float32), pw


def store(conn, name: str, x: np.ndarray, who: np.ndarray, metric: str, threshold: float) -> tuple[int, np.ndarray]:
    """Enrol faces; return (model_id, identity_id of each identity index)."""
    n, dims = x.shape
    model_id = register_model(conn, ModelSpec(name, "face", dims, metric, normalized=True, threshold=threshold))
    ids_n = int(who.max()) + 1
    conn.execute(
        "INSERT INTO pgvision.identities (name) SELECT %s || '-' || g FROM generate_series(0, %s - 1) g",
        (name, ids_n))
    ident = np.array([r[0] for r in conn.execute(
        "SELECT identity_id FROM pgvision.identities WHERE name LIKE %s ORDER BY substr(name, %s)::int",
        (f"{name}-%", len(name) + 2))], dtype=np.int64)
    conn.execute(
        "INSERT INTO pgvision.images (sha256, uri) SELECT sha256((%s || g)::bytea), 'bench:' || %s || '/' || g "
        "FROM generate_series(0, %s - 1) g", (name, name, n))
    conn.execute(
        """INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, identity_id)
           SELECT i.image_id, 'bench', 0, 0, 10, 10, (%s::bigint[])[split_part(i.uri, '/', 2)::int + 1]
           FROM pgvision.images i WHERE i.uri LIKE %s""",
        (ident[who].tolist(), f"bench:{name}/%"))
    face_rows = conn.execute(
        "SELECT f.face_id, split_part(i.uri, '/', 2)::int FROM pgvision.faces f "
        "JOIN pgvision.images i USING (image_id) WHERE i.uri LIKE %s", (f"bench:{name}/%",)).fetchall()
    face_id = np.zeros(n, dtype=np.int64)
    for fid, row in face_rows:
        face_id[row] = fid
    for i in range(0, n, 5000):
        with conn.transaction():
            pg_copy.copy_vectors(conn, "face_embeddings", "face_id", model_id, face_id[i:i + 5000], x[i:i + 5000])
    conn.execute("VACUUM ANALYZE pgvision.face_embeddings")
    conn.execute("VACUUM ANALYZE pgvision.faces")
    return model_id, ident


def run(url: str, n: int, dims: int, a) -> dict:
    metric, threshold = ("l2", 0.6) if dims <= 128 else ("cosine", 0.4)
    name = f"faces-{n}-{dims}"
    x, who, probes, truth = gallery(n, dims, a.probes, seed=n + dims)
    conn = common.connect(url)
    conn.execute("SET max_parallel_workers_per_gather = 0")
    t = time.perf_counter()
    model_id, ident = store(conn, name, x, who, metric, threshold)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    index = ddl.ensure_index(conn, model_id)
    build_s = time.perf_counter() - t
    index_mb = conn.execute("SELECT pg_relation_size(%s::regclass)", (f"pgvision.{index}",)).fetchone()[0] / 2**20
    table_mb = conn.execute("SELECT pg_total_relation_size('pgvision.face_embeddings')").fetchone()[0] / 2**20
    brute = common.BruteForce(x, who, metric)
    sql = "SELECT identity_id, distance, is_match FROM pgvision.identify(%s, model => %s)"
    for q in probes[:10]:  # warm: plans, caches
        conn.execute(sql, (q, name)).fetchall()
    lat = {"identify": [], "brute": []}
    got = {"identify": [], "brute": []}

    def call_identify() -> None:
        for q in probes:
            t0 = time.perf_counter()
            rows = conn.execute(sql, (q, name)).fetchall()
            lat["identify"].append(time.perf_counter() - t0)
            got["identify"].append(rows[0][0] if rows else None)

    def call_brute() -> None:
        for q in probes:
            t0 = time.perf_counter()
            r = brute.identify(q)
            lat["brute"].append(time.perf_counter() - t0)
            got["brute"].append(int(ident[r[0][0]]))

    common.interleaved({"identify": call_identify, "brute": call_brute}, a.reps)
    np_ = len(probes)
    agree = np.mean([a_ == b for a_, b in zip(got["identify"][-np_:], got["brute"][-np_:], strict=True)])
    correct = np.mean([g == ident[t] for g, t in zip(got["identify"][-np_:], truth, strict=True)])
    conn.execute("DELETE FROM pgvision.models WHERE model_id = %s", (model_id,))
    conn.close()
    res = {"faces": n, "identities": int(who.max()) + 1, "dims": dims, "metric": metric, "load_s": load_s,
           "build_s": build_s, "index_mb": index_mb, "table_mb": table_mb,
           "identify_p50_ms": 1000 * common.percentile(lat["identify"], 50),
           "identify_p99_ms": 1000 * common.percentile(lat["identify"], 99),
           "brute_p50_ms": 1000 * common.percentile(lat["brute"], 50),
           "brute_p99_ms": 1000 * common.percentile(lat["brute"], 99),
           "agreement_with_brute": float(agree), "rank1_correct": float(correct)}
    print(f"  {n:,} x {dims}: build {build_s:.1f} s, index {index_mb:.0f} MB, identify p50 "
          f"{res['identify_p50_ms']:.2f} ms p99 {res['identify_p99_ms']:.2f} ms, "
          f"brute p50 {res['brute_p50_ms']:.2f} ms, "
          f"agreement {agree:.3f}", flush=True)
    return res


def plot(rows: list[dict], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for dims in sorted({r["dims"] for r in rows}):
        rs = sorted((r for r in rows if r["dims"] == dims), key=lambda r: r["faces"])
        n = [r["faces"] for r in rs]
        axes[0].plot(n, [r["identify_p50_ms"] for r in rs], "o-", label=f"identify() p50, {dims}-d")
        axes[0].plot(n, [r["identify_p99_ms"] for r in rs], "o:", label=f"identify() p99, {dims}-d")
        axes[0].plot(n, [r["brute_p50_ms"] for r in rs], "s--", label=f"brute force p50, {dims}-d")
        axes[1].plot(n, [r["build_s"] for r in rs], "o-", label=f"HNSW build, {dims}-d")
        axes[2].plot(n, [r["index_mb"] for r in rs], "o-", label=f"index size, {dims}-d")
    for ax, yl in zip(axes, ["latency, ms (client wall clock)", "build seconds", "index MB"], strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("enrolled faces")
        ax.set_ylabel(yl)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    common.save_plot(fig, name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000], help="enrolled faces (default 10k 100k)")
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 512], help="dimensions (default 128 512)")
    ap.add_argument("--probes", type=int, default=100, help="probe faces per round (default 100)")
    ap.add_argument("--out", default="identify", help="name of results / plot (default identify)")
    common.add_server_args(ap)
    a = ap.parse_args()
    results = {"benchmark": "identify", "args": {k: str(v) for k, v in vars(a).items()}, "runs": []}
    with common.bench_database("identify", a.data_dir) as url:
        with common.connect(url) as conn:
            results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        for dims in a.dims:
            for n in a.sizes:
                results["runs"].append(run(url, n, dims, a))
    rows = [[r["faces"], r["dims"], r["metric"], r["build_s"], r["index_mb"], r["identify_p50_ms"],
             r["identify_p99_ms"], r["brute_p50_ms"], r["brute_p99_ms"], r["brute_p50_ms"] / r["identify_p50_ms"],
             r["agreement_with_brute"]] for r in results["runs"]]
    common.print_table(["faces", "dims", "metric", "HNSW build s", "index MB", "identify p50 ms", "p99 ms",
                        "brute p50 ms", "brute p99 ms", "brute p50 / identify p50", "same best identity"], rows,
                       f"identify() vs brute force ({a.probes} probes x {a.reps} interleaved rounds)")
    common.write_results(a.out, results)
    plot(results["runs"], a.out)


if __name__ == "__main__":
    main()
