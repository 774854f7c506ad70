"""Peers side by side: pgvision's default path against in-process HNSW libraries on the same vectors.

What a user would pick instead of a database: FAISS ``IndexHNSWFlat`` (``faiss-cpu``) and
``hnswlib``, each with the same graph parameters as pgvision's index and one thread, beside
``pgvision.search_images`` and raw pgvector SQL on the same index, on the same
``--rows`` x ``--dims`` clustered unit vectors (``common.clustered``, 1,000 clusters, the
generator of bench_scale.py) and the same held-out queries (not in the index), one query
at a time, as an application asks. ``faiss-cpu`` and ``hnswlib`` are benchmark-only
(``pip install faiss-cpu hnswlib``), not pgvision dependencies.

* pgvision: the vectors through ``pg_copy`` (pgvision's COPY), the index built by
  ``ddl.ensure_index`` as a load builds it, i.e. with the shape the row count calls for
  (``pgvision.index.shape``: m 16 / ef_construction 64 below 250k rows, m 32 / 128 from
  there), one build process (``max_parallel_maintenance_workers = 0``; ``--build-threads``
  N: the leader and N - 1 workers) and ``maintenance_work_mem`` large enough for the
  graph; the peers get the same m and ef_construction and as many build threads; every
  search runs on one thread.
* For each ef_search (efSearch, ef) in ``--ef``: recall@10 (share of the true top-10 ids,
  numpy exact) and QPS, median of ``--reps`` interleaved rounds; then each method's QPS at
  the smallest ef reaching recall 0.95 and 0.99 ("QPS at equal recall").
* Build seconds and index memory (PostgreSQL: ``pg_relation_size``; FAISS: its serialized
  size; hnswlib: ``index_file_size``).
* Where a pgvision query's time goes, at the ef reaching 0.95: planning and execution
  (``EXPLAIN ANALYZE`` of the raw statement: pgvector's graph walk is the execution) and the
  client round trip (wall clock minus both), mean ms over the queries.
* Empty answers: ``search_images(..., max_distance => d)`` with a d that no hit reaches,
  p50 / p99 beside the same search without it (the cut is applied after the walk, so both
  should cost the same).

Example::

    PYTHONPATH=loader .venv/bin/python bench/bench_peers.py --rows 100000 --dims 512 --queries 300 --reps 3
"""

from __future__ import annotations

import argparse
import hashlib
import time

import numpy as np

import common
from pgvision.index import ddl
from pgvision.ingest import pg_copy
from pgvision.registry import ModelSpec, get_model, register_model

K = 10


def load_pgvision(conn, name: str, x: np.ndarray, batch: int = 5000) -> tuple[dict, dict[int, int], float]:
    """COPY ``x`` under image model ``name`` (cosine); return (model row, {image_id: row}, seconds)."""
    t = time.perf_counter()
    model_id = register_model(conn, ModelSpec(name, "image", x.shape[1], "cosine", normalized=True))
    recs = [
        pg_copy.ImageRecord(hashlib.sha256(f"{name}-{i}".encode()).digest(), f"bench:{name}/{i}", None)
        for i in range(len(x))
    ]
    for i in range(0, len(x), batch):
        pg_copy.copy_image_embeddings(conn, model_id, recs[i : i + batch], x[i : i + batch])
    seconds = time.perf_counter() - t
    conn.execute("VACUUM ANALYZE pgvision.image_embeddings")
    row_of = {
        iid: int(uri.rsplit("/", 1)[1])
        for iid, uri in conn.execute(
            "SELECT image_id, uri FROM pgvision.images WHERE uri LIKE %s", (f"bench:{name}/%",)
        )
    }
    return get_model(conn, name), row_of, seconds


def recall_at_k(got: list[list[int]], truth: list[set[int]]) -> float:
    """Share of the true top-k ids returned (rows of ``x``)."""
    return float(np.mean([len(set(g) & t) / K for g, t in zip(got, truth, strict=True)]))


def build_peers(x: np.ndarray, m: int, efc: int, threads: int = 1) -> tuple[object, object, dict[str, float]]:
    """FAISS IndexHNSWFlat (inner product on unit vectors) and hnswlib (cosine), ``threads`` build threads each.

    Returns (faiss index, hnswlib index, {name: build seconds}); FAISS is left at one thread for the searches.
    """
    import faiss
    import hnswlib

    faiss.omp_set_num_threads(threads)
    n, dims = x.shape
    t = time.perf_counter()
    fi = faiss.IndexHNSWFlat(dims, m, faiss.METRIC_INNER_PRODUCT)
    fi.hnsw.efConstruction = efc
    fi.add(x)
    build = {"faiss": time.perf_counter() - t}
    faiss.omp_set_num_threads(1)
    t = time.perf_counter()
    hi = hnswlib.Index(space="cosine", dim=dims)
    hi.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=0)
    hi.add_items(x, np.arange(n), num_threads=threads)
    build["hnswlib"] = time.perf_counter() - t
    return fi, hi, build


def sweep(methods: dict, efs: list[int], reps: int, n_queries: int, truth, on_ef) -> list[dict]:
    """Recall@10 and QPS (median of ``reps`` interleaved rounds) of each method at each ef."""
    out = []
    names = list(methods)
    for ef in efs:
        on_ef(ef)
        qps: dict[str, list[float]] = {k: [] for k in names}
        rec: dict[str, float] = {}
        for r in range(reps):
            for key in names[r % len(names) :] + names[: r % len(names)]:  # interleaved rounds
                t = time.perf_counter()
                got = methods[key](ef)
                qps[key].append(n_queries / (time.perf_counter() - t))
                rec[key] = recall_at_k(got, truth)
        row = {"ef": ef, "qps_by_round": qps}
        row.update({f"{k} recall": rec[k] for k in names})
        row.update({f"{k} QPS": common.median(qps[k]) for k in names})
        out.append(row)
        text = "; ".join(f"{k} recall {rec[k]:.3f} QPS {common.median(qps[k]):,.0f}" for k in names)
        print(f"ef {ef}: {text}", flush=True)
    return out


def equal_recall(rows: list[dict], names: list[str]) -> dict:
    """For recall 0.95 and 0.99: each method's smallest ef reaching it, its recall and QPS (None: not reached)."""
    equal: dict = {}
    table = []
    for target in (0.95, 0.99):
        equal[target] = {}
        for k in names:
            hit = next((s for s in rows if s[f"{k} recall"] >= target), None)
            equal[target][k] = hit and {"ef": hit["ef"], "recall": hit[f"{k} recall"], "qps": hit[f"{k} QPS"]}
        base = equal[target]["search_images"]
        for k, v in equal[target].items():
            if v:
                table.append([target, k, v["ef"], v["recall"], v["qps"], v["qps"] / base["qps"] if base else None])
            else:
                table.append([target, k, "not reached", None, None, None])
    headers = ["recall target", "method", "smallest ef reaching it", "recall@10", "QPS", "QPS / search_images"]
    common.print_table(headers, table, title="QPS at equal recall")
    return equal


def time_split(conn, raw_conn, api: str, raw: str, name: str, queries: np.ndarray, ef: int) -> dict:
    """Mean ms a query: planning, execution (the graph walk) and client round trip."""
    raw_conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    plan_ms, exec_ms, wall_ms, api_server, api_wall = [], [], [], [], []
    for q in queries:
        t = time.perf_counter()
        raw_conn.execute(raw, (q,)).fetchall()
        wall_ms.append((time.perf_counter() - t) * 1000)
        out = raw_conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + raw, (q,)).fetchone()[0][0]
        plan_ms.append(out["Planning Time"])
        exec_ms.append(out["Execution Time"])
        t = time.perf_counter()
        conn.execute(api, (q, name, ef)).fetchall()
        api_wall.append((time.perf_counter() - t) * 1000)
        out = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + api, (q, name, ef)).fetchone()[0][0]
        api_server.append(out["Execution Time"] + out["Planning Time"])
    split = {
        "ef_search": ef,
        "raw_planning_ms": float(np.mean(plan_ms)),
        "raw_execution_ms": float(np.mean(exec_ms)),
        "raw_wall_ms": float(np.mean(wall_ms)),
        "api_server_ms": float(np.mean(api_server)),
        "api_wall_ms": float(np.mean(api_wall)),
    }
    split["raw_round_trip_ms"] = split["raw_wall_ms"] - split["raw_planning_ms"] - split["raw_execution_ms"]
    split["api_round_trip_ms"] = split["api_wall_ms"] - split["api_server_ms"]
    print(
        f"\nwhere the time goes at ef_search {ef} (mean ms a query): raw SQL planning "
        f"{split['raw_planning_ms']:.3f}, execution (graph walk) {split['raw_execution_ms']:.3f}, client round "
        f"trip {split['raw_round_trip_ms']:.3f} (wall {split['raw_wall_ms']:.3f}); search_images in the server "
        f"{split['api_server_ms']:.3f}, round trip {split['api_round_trip_ms']:.3f} (wall {split['api_wall_ms']:.3f})"
    )
    return split


def run(a) -> dict:
    n, dims = a.rows, a.dims
    x = common.normalize(common.clustered(n + a.queries, dims, 1000, seed=n))
    x, queries = x[:n], x[n:]
    truth = [set(np.argsort(-(x @ q))[:K].tolist()) for q in queries]
    res: dict = {"rows": n, "dims": dims, "queries": len(queries), "reps": a.reps}
    with common.bench_database("peers", a.data_dir) as url:
        conn = common.connect(url)
        common.print_machine(info := common.machine(conn))
        res["machine"] = info
        conn.execute("SET max_parallel_workers_per_gather = 0")
        # build processes: the leader and threads - 1 workers, as the peers' threads
        conn.execute(f"SET max_parallel_maintenance_workers = {a.build_threads - 1}")
        conn.execute(f"SET maintenance_work_mem = '{a.maintenance_work_mem}'")
        name = f"peers-{n}"
        model, row_of, load_s = load_pgvision(conn, name, x)
        t = time.perf_counter()
        index = ddl.ensure_index(conn, model["model_id"])
        pg_build = time.perf_counter() - t
        model = get_model(conn, name)
        m, efc = model["hnsw_m"], model["hnsw_ef_construction"]
        res.update(load_s=load_s, m=m, ef_construction=efc, quantization=model["quantization"])
        print(
            f"pgvision: loaded {n:,} x {dims} in {load_s:.1f} s, index {index} (m {m}, ef_construction {efc}, "
            f"quantization {model['quantization']}) built in {pg_build:.1f} s",
            flush=True,
        )
        fi, hi, build = build_peers(x, m, efc, a.build_threads)
        build = {"pgvision": pg_build, **build}
        pg_bytes = conn.execute("SELECT pg_relation_size(%s::regclass)", (f"pgvision.{index}",)).fetchone()[0]
        import faiss

        memory_mb = {
            "pgvision": pg_bytes / 2**20,
            "faiss": len(faiss.serialize_index(fi)) / 2**20,
            "hnswlib": hi.index_file_size() / 2**20,
        }
        res.update(build_s=build, memory_mb=memory_mb)
        print(
            "build s: "
            + ", ".join(f"{k} {v:.1f}" for k, v in build.items())
            + "; index MB: "
            + ", ".join(f"{k} {v:.0f}" for k, v in memory_mb.items()),
            flush=True,
        )

        api = "SELECT image_id FROM pgvision.search_images(%s, 10, %s, ef_search => %s)"
        raw = (
            f"SELECT image_id FROM pgvision.image_embeddings WHERE model_id = {int(model['model_id'])} "
            f"ORDER BY embedding::vector({dims}) <=> %s::vector({dims}) LIMIT 10"
        )
        raw_conn = common.connect(url)
        raw_conn.execute("SET max_parallel_workers_per_gather = 0")

        def m_faiss(ef):
            fi.hnsw.efSearch = ef
            return [fi.search(q[None, :], K)[1][0].tolist() for q in queries]

        def m_hnswlib(ef):
            hi.set_ef(max(ef, K))
            return [hi.knn_query(q[None, :], k=K, num_threads=1)[0][0].tolist() for q in queries]

        methods = {
            "search_images": lambda ef: [[row_of[r[0]] for r in conn.execute(api, (q, name, ef))] for q in queries],
            "raw SQL": lambda ef: [[row_of[r[0]] for r in raw_conn.execute(raw, (q,))] for q in queries],
            "faiss": m_faiss,
            "hnswlib": m_hnswlib,
        }
        for q in queries[:20]:  # warm caches and plans
            conn.execute(api, (q, name, 40)).fetchall()
            raw_conn.execute(raw, (q,)).fetchall()
        res["sweep"] = sweep(
            methods, a.ef, a.reps, len(queries), truth, lambda ef: raw_conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        )
        res["equal_recall"] = equal_recall(res["sweep"], list(methods))
        ef95 = (res["equal_recall"][0.95]["raw SQL"] or {"ef": a.ef[-1]})["ef"]
        res["time_split"] = time_split(conn, raw_conn, api, raw, name, queries, ef95)
        res["empty"] = common.empty_answers(conn, api, name, x, queries, ef95, a.reps)
        raw_conn.close()
        conn.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000, help="vectors indexed (default 100,000)")
    ap.add_argument("--dims", type=int, default=512, help="dimension (default 512)")
    ap.add_argument("--queries", type=int, default=300, help="held-out queries (default 300)")
    ap.add_argument(
        "--ef",
        type=int,
        nargs="+",
        default=[10, 20, 40, 80, 160, 320],
        help="ef_search / efSearch / ef values swept (default 10 20 40 80 160 320)",
    )
    ap.add_argument("--build-threads", type=int, default=1,
                    help="threads of every build (PostgreSQL: the leader and N - 1 parallel workers); the searches "
                         "use one (default 1)")
    ap.add_argument("--maintenance-work-mem", default="2GB", help="for pgvision's build (default 2GB)")
    ap.add_argument("--out", default=None, help="results file name (default peers_<rows>)")
    common.add_server_args(ap)
    a = ap.parse_args()
    res = run(a)
    common.write_results(a.out or f"peers_{a.rows}", res)


if __name__ == "__main__":
    main()
