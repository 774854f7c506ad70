"""Search within a collection (tenant): latency and recall@10 by collection size, with and
without the collection's own partial index, against the unfiltered search.

One cosine image model of ``--rows`` x ``--dims`` clustered vectors (``common.clustered``),
split at random into collections of 50 %, 10 %, 5 %, 2.5 %, 1 % and 0.1 % of the rows (the
rest in ``default``), so each collection's rows are spread over every cluster (no tenant has
a region of the space to itself: the hard case for a filter after the index scan). The
model's HNSW index (m 16, ef_construction 64) is built, then for ``--queries`` held-out
queries, one at a time:

* ``unfiltered``: ``search_images(q, 10, 'bench')`` as the schema owner (the static path);
* ``<collection>``: ``search_images(q, 10, 'bench', collection => name)`` (_nearest.v5: exact
  scan of a collection of at most 2,000 rows, otherwise a bounded iterative scan of the
  model's index), and the same after ``pgvision.index.collection_index`` built the
  collection's own partial index (``own index``);
* ``reader``: the 1 % collection searched by a login granted only that collection, under
  row-level security, without naming it.

With ``--sweep-ef 40 80 160`` it instead builds only the own indexes of the 10 %, 5 % and
2.5 % collections and measures each at those ef_search values (passed explicitly), without
the model's index: how large an ef_search a collection's own, smaller graph needs.

Recall@10 is counted by true ids within the collection (numpy exact top-10 over its rows).
Latency: p50 / p99 of per-query milliseconds over ``--reps`` interleaved rounds (all
configurations of a round run the same queries), QPS = 1000 / mean ms.

Example::

    .venv/bin/python bench/bench_collections.py --rows 200000 --dims 128 --queries 200
    .venv/bin/python bench/bench_collections.py --rows 200000 --dims 128 --queries 200 --sweep-ef 40 80 160
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time

import numpy as np

import common

SHARES = {"c50": 0.5, "c10": 0.1, "c5": 0.05, "c2_5": 0.025, "c1": 0.01, "c0_1": 0.001}
K = 10


def load(conn, x: np.ndarray, seed: int) -> tuple[int, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Store ``x`` split into the collections; return (model_id, rows of each collection, image ids)."""
    from pgvision.ingest import pg_copy
    from pgvision.registry import ModelSpec, register_model
    from pgvision.tenancy.collection import use_collection

    model_id = register_model(conn, ModelSpec("bench", "image", x.shape[1], "cosine", normalized=True))
    order = np.random.default_rng(seed).permutation(len(x))
    rows, start = {}, 0
    for name, share in SHARES.items():
        n = int(round(share * len(x)))
        rows[name] = np.sort(order[start : start + n])
        start += n
    rows["default"] = np.sort(order[start:])
    ids = {}
    for name, r in rows.items():
        use_collection(conn, name)
        recs = [pg_copy.ImageRecord(hashlib.sha256(f"{name}-{i}".encode()).digest(), f"bench:{name}/{i}") for i in r]
        for i in range(0, len(r), 5000):
            pg_copy.copy_image_embeddings(conn, model_id, recs[i : i + 5000], x[r[i : i + 5000]])
        got = dict(
            conn.execute("SELECT uri, image_id FROM pgvision.images WHERE uri LIKE %s", (f"bench:{name}/%",)).fetchall()
        )
        ids[name] = np.array([got[rec.uri] for rec in recs], dtype=np.int64)
    conn.execute("RESET pgvision.collection_id")
    conn.execute("VACUUM ANALYZE pgvision.image_embeddings")
    conn.execute("VACUUM ANALYZE pgvision.images")
    return model_id, rows, ids


def sweep(conn, model_id: int, x, rows, ids, queries, a) -> None:
    """Own indexes of c10, c5, c2_5 only; recall@10 and p50 / p99 ms at each ef_search of ``a.sweep_ef``."""
    from pgvision.index import collection_index
    from pgvision.registry import get_model_by_id

    model = get_model_by_id(conn, model_id)
    model.update(index_method="hnsw", hnsw_m=16, hnsw_ef_construction=64)
    names = ["c10", "c5", "c2_5"]
    for name in names:
        cid = conn.execute("SELECT collection_id FROM pgvision.collections WHERE name = %s", (name,)).fetchone()[0]
        conn.execute(collection_index.collection_index_ddl(model, cid))
    conn.execute("ANALYZE pgvision.image_embeddings")
    out = []
    for name in names:
        d = 1.0 - queries @ x[rows[name]].T
        truth = [set(ids[name][t].tolist()) for t in np.argsort(d, axis=1)[:, :K]]
        for ef in a.sweep_ef:
            ms, hits = [], 0
            for _ in range(a.reps):
                for q, tr in zip(queries, truth, strict=True):
                    t0 = time.perf_counter()
                    got = [r[0] for r in conn.execute(
                        "SELECT image_id FROM pgvision.search_images(%s::vector, 10, 'bench', ef_search => %s, "
                        "collection => %s)", (str(q.tolist()), ef, name))]
                    ms.append((time.perf_counter() - t0) * 1000)
                    hits += len(set(got) & tr)
            out.append([name, f"{len(rows[name]):,}", ef, common.fmt(hits / (K * len(queries) * a.reps)),
                        common.fmt(common.percentile(ms, 50)), common.fmt(common.percentile(ms, 99))])
    common.print_table(["collection", "rows", "ef_search", "recall@10", "p50 ms", "p99 ms"], out,
                       title=f"own index only, {a.rows:,} x {a.dims}, {a.queries} queries x {a.reps} rounds")
    common.write_results("collections_ef", {"rows": a.rows, "dims": a.dims, "table": out})


def truths_of(x, rows, ids, queries) -> dict[str, list[set[int]]]:
    """Exact top-10 image ids per query: over every row ("unfiltered") and within each collection."""
    id_of_row = np.empty(len(x), dtype=np.int64)
    id_of_row[np.concatenate([rows[n] for n in rows])] = np.concatenate([ids[n] for n in rows])
    top = np.argsort(1.0 - queries @ x.T, axis=1)[:, :K]
    out = {"unfiltered": [set(id_of_row[t].tolist()) for t in top]}
    for name in SHARES:
        top = np.argsort(1.0 - queries @ x[rows[name]].T, axis=1)[:, :K]
        out[name] = [set(ids[name][t].tolist()) for t in top]
    return out


def report(a, rows, base, before, after) -> None:
    """The before / after table."""
    out = []
    for label in base:
        n = a.rows if label == "unfiltered" else len(rows["c1" if label.startswith("reader") else label])
        b, o = before[label], after[label]
        out.append([label, f"{n:,}", common.fmt(b["p50_ms"]), common.fmt(b["p99_ms"]), common.fmt(b["recall"]),
                    common.fmt(o["p50_ms"]), common.fmt(o["p99_ms"]), common.fmt(o["recall"]),
                    f"{o['p99_ms'] / after['unfiltered']['p99_ms']:.2f}", b["min_rows"], o["min_rows"]])
    common.print_table(["search", "rows", "p50 ms", "p99 ms", "recall@10", "own idx p50", "own idx p99",
                        "own idx recall", "p99 / unfiltered", "min rows", "min rows (own)"], out,
                       title=f"{a.rows:,} x {a.dims}, {a.queries} queries x {a.reps} rounds, k = 10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dims", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sweep-ef", type=int, nargs="*", default=None, metavar="EF",
                    help="only sweep ef_search on the own indexes of the 10 %%, 5 %% and 2.5 %% collections")
    common.add_server_args(ap)
    a = ap.parse_args()

    from pgvision.index import collection_index, ddl
    from pgvision.tenancy.collection import grant_collections

    x = common.normalize(common.clustered(a.rows + a.queries, a.dims, max(1, a.rows // 100), seed=a.seed))
    queries, x = x[a.rows :], x[: a.rows]
    with common.bench_database("collections", a.data_dir) as url:
        conn = common.connect(url)
        info = common.machine(conn)
        common.print_machine(info)
        conn.execute("SET max_parallel_workers_per_gather = 0")
        t = time.perf_counter()
        model_id, rows, ids = load(conn, x, a.seed)
        load_s = time.perf_counter() - t
        if a.sweep_ef:
            sweep(conn, model_id, x, rows, ids, queries, a)
            return
        t = time.perf_counter()
        ddl.set_index(conn, "bench", method="hnsw", m=16, ef_construction=64)
        index_s = time.perf_counter() - t
        print(f"loaded {a.rows:,} x {a.dims} in {load_s:.0f} s; model index built in {index_s:.0f} s", flush=True)

        truths = truths_of(x, rows, ids, queries)

        role = f"bench_reader_{os.getpid()}"
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.execute(f'CREATE ROLE "{role}" IN ROLE pgvision_reader')
        grant_collections(conn, role, ["c1"])
        reader = common.connect(url)
        reader.execute("SET max_parallel_workers_per_gather = 0")
        reader.execute(f'SET ROLE "{role}"')

        def runner(c, sql_text, params):
            def run(got: list, ms: list):
                for q in queries:
                    t0 = time.perf_counter()
                    got.append([r[0] for r in c.execute(sql_text, (str(q.tolist()), *params))])
                    ms.append((time.perf_counter() - t0) * 1000)

            return run

        def measure(configs: dict) -> dict:
            """configs: label -> (runner, truth key). Interleaved rounds; p50/p99 ms, QPS, recall@10."""
            ms = {k: [] for k in configs}
            got = {k: [] for k in configs}
            names = list(configs)
            for r in range(a.reps):
                for k in names[r % len(names) :] + names[: r % len(names)]:
                    g = []
                    configs[k][0](g, ms[k])
                    if r == 0:
                        got[k] = g
            out = {}
            for k, (_, tk) in configs.items():
                hits = sum(len(set(g) & t) for g, t in zip(got[k], truths[tk], strict=True))
                rows_back = min(len(g) for g in got[k])
                out[k] = {
                    "p50_ms": common.percentile(ms[k], 50),
                    "p99_ms": common.percentile(ms[k], 99),
                    "qps": 1000 / float(np.mean(ms[k])),
                    "recall": hits / (K * len(queries)),
                    "min_rows": rows_back,
                }
            return out

        search = "SELECT image_id FROM pgvision.search_images(%s::vector, 10, 'bench'{})"
        base = {"unfiltered": (runner(conn, search.format(""), ()), "unfiltered")}
        for name in SHARES:
            base[name] = (runner(conn, search.format(", collection => %s"), (name,)), name)
        base["reader (c1, RLS)"] = (runner(reader, search.format(""), ()), "c1")
        before = measure(base)

        t = time.perf_counter()
        built = collection_index.ensure_collection_indexes(conn, model_id)  # what a load's last step does
        own_s = time.perf_counter() - t
        conn.execute("ANALYZE pgvision.image_embeddings")
        print(f"own indexes built in {own_s:.0f} s: {', '.join(built)}", flush=True)
        after_cfg = {"unfiltered": base["unfiltered"]}
        for name in SHARES:
            after_cfg[name] = (runner(conn, search.format(", collection => %s"), (name,)), name)
        after_cfg["reader (c1, RLS)"] = base["reader (c1, RLS)"]
        after = measure(after_cfg)

        report(a, rows, base, before, after)
        common.write_results(
            "collections",
            {
                "machine": info,
                "rows": a.rows,
                "dims": a.dims,
                "queries": a.queries,
                "reps": a.reps,
                "load_s": load_s,
                "index_s": index_s,
                "own_index_s": own_s,
                "before": before,
                "after": after,
                "built": built,
            },
        )
        reader.close()
        conn.execute(f'DROP OWNED BY "{role}"')
        conn.execute(f'DROP ROLE "{role}"')


if __name__ == "__main__":
    main()
