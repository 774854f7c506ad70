"""Scale: images (512-d cosine) and faces (128-d L2, with look-alikes) at N rows, one command.

Both sets go in through pgvision's own path: images through ``vector_load.load_vectors`` (what
``pgvision load-vectors`` runs: COPY of images and embeddings), faces through
``pg_copy.copy_vectors`` after the images / identities / faces rows (what ``faces load``
writes). Then the model's HNSW index is built (m 16, ef_construction 64) and timed.

Images (clustered synthetic vectors, ``common.clustered``, 1,000 clusters), for each
``--quantization`` (auto: the shape a load chooses by size; none, halfvec, binary: the
index rebuilt by ``ddl.set_index``):

* ef_search chosen by ``recall_target.choose_setting`` (target 0.95, what ``db index``
  applies from 10k rows) and the recall@10 it measured on stored vectors;
* for held-out queries: recall@10 against numpy's exact top-10, p50 / p99 ms (client
  wall clock, one client, round trip included) and QPS of ``search_images`` and of raw
  ``ORDER BY embedding::vector(512) <=> q LIMIT 10`` at the same ef_search (ids only), of
  the same raw query joined to ``images`` for the uri and label that
  search_images returns ("raw + images": like for like), and numpy brute force over the
  matrix in memory;
* empty answers: ``search_images`` with a ``max_distance`` below every query's nearest
  distance beside the same search without it, p99 ratio (``common.empty_answers``).

Faces (families of 5 look-alike people, 1..19 photos each, ``families()`` below):

* identify p50 / p99 *before ANALYZE* (right after the bulk load, as a user would run it)
  and after;
* agreement of identify's best identity with the exact answer of the same rule (numpy: an
  identity's distance = min(nearest photo, mean of its photos)), for ``--candidates``
  (identify looks at the owners of max(200, 20 x candidates) nearest faces and the
  identities of the nearest templates); ``--identify-variants`` adds released earlier
  versions (v4: photos only; v5 at photo depth 100) installed side by side;
* numpy brute force p50.

Prints the server's memory settings with every run. Example::

    .venv/bin/python bench/bench_scale.py --rows 100000 --faces 100000
    .venv/bin/python bench/bench_scale.py --rows 100000 --faces 0 --quantization none halfvec binary
    .venv/bin/python bench/bench_scale.py --rows 0 --faces 1000000      # faces only, long
    .venv/bin/python bench/bench_scale.py --rows 1000000 --faces 0 --quantization auto none binary \
        --m 16 --ef-construction 64     # the default path beside pgvector's defaults and binary
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import common
from pgvision.index import ddl, recall_target
from pgvision.ingest import pg_copy
from pgvision.ingest.vector_files import VectorSet
from pgvision.load_vectors import load_vectors
from pgvision.registry import ModelSpec, get_model, register_model


def families(n_photos: int, dims: int, seed: int, family_size: int = 5, max_photos: int = 19,
             family_spread: float = 0.6, person_spread: float = 0.25):
    """About ``n_photos`` unit vectors of people in families of look-alikes.

    Returns (photos (n, d) float32, person of each photo, person centres (p, d) float32).
    Family centre -> person offset has L2 norm ``family_spread``; person -> photo
    ``person_spread`` (the same generator as tests/sqlhelpers.py ``families``).
    """
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    n_people = max(2, n_photos // ((1 + max_photos) // 2))
    fam = unit(rng.standard_normal((max(1, n_people // family_size), dims)).astype(np.float32))
    people = unit(fam[np.arange(n_people) // family_size % len(fam)]
                  + family_spread * unit(rng.standard_normal((n_people, dims)).astype(np.float32)))
    counts = rng.integers(1, max_photos + 1, n_people)
    who = np.repeat(np.arange(n_people), counts)[:n_photos]
    photos = np.empty((len(who), dims), dtype=np.float32)
    for i in range(0, len(who), 100_000):
        j = min(len(who), i + 100_000)
        offsets = unit(rng.standard_normal((j - i, dims)).astype(np.float32))
        photos[i:j] = unit(people[who[i:j]] + person_spread * offsets)
    return photos, who, people.astype(np.float32)


def timed(fn, probes):
    lat, out = [], []
    for q in probes:
        t = time.perf_counter()
        out.append(fn(q))
        lat.append(time.perf_counter() - t)
    return lat, out


def stats(lat) -> dict:
    return {"p50_ms": 1000 * common.percentile(lat, 50), "p99_ms": 1000 * common.percentile(lat, 99),
            "qps": len(lat) / sum(lat)}


def index_mb(conn, name: str) -> float:
    return conn.execute("SELECT pg_relation_size(%s::regclass)", (f"pgvision.{name}",)).fetchone()[0] / 2**20


def raw_sql(model_id: int, dims: int, quantization: str) -> str:
    """pgvector's own query for the model's index expression (pgvector README forms)."""
    where = f"FROM pgvision.image_embeddings WHERE model_id = {model_id}"
    if quantization == "halfvec":
        return f"SELECT image_id {where} ORDER BY embedding::halfvec({dims}) <=> %s::halfvec({dims}) LIMIT 10"
    if quantization == "binary":
        return (f"SELECT image_id FROM (SELECT image_id, embedding::vector({dims}) <=> %(q)s::vector({dims}) AS d "
                f"{where} "
                f"ORDER BY binary_quantize(embedding::vector({dims}))::bit({dims}) <~> "
                f"binary_quantize(%(q)s::vector({dims}))::bit({dims}) LIMIT %(ef)s) c ORDER BY d LIMIT 10")
    return f"SELECT image_id {where} ORDER BY embedding::vector({dims}) <=> %s::vector({dims}) LIMIT 10"


def run_images(url: str, n: int, a) -> list[dict]:
    dims, name = 512, f"img-{n}"
    x = common.normalize(common.clustered(n + a.probes, dims, 1000, seed=n))
    x, queries = x[:n], x[n:]
    vs = VectorSet(vectors=x, ids=[str(i) for i in range(n)], labels=[None] * n,
                   uris=[f"bench:{name}#{i}" for i in range(n)], source=Path(f"/bench/{name}.npy"))
    conn = common.connect(url)
    conn.execute("SET max_parallel_workers_per_gather = 0")
    t = time.perf_counter()
    load_vectors(conn, vs, ModelSpec(name, "image", dims, "cosine", normalized=True), build_index=False,
                 progress=False)
    load_s = time.perf_counter() - t
    model = get_model(conn, name)
    conn.execute("ANALYZE pgvision.image_embeddings")
    truth = [set(np.argsort(-(x @ q))[:10].tolist()) for q in queries]
    row_of = {iid: int(uri.rsplit("#", 1)[1]) for iid, uri in conn.execute(
        "SELECT image_id, uri FROM pgvision.images WHERE uri LIKE %s", (f"bench:{name}#%",))}
    runs = [measure_images(url, conn, name, model, x, queries, truth, row_of, qz, a) for qz in a.quantization]
    for r in runs:
        r["load_s"] = load_s
    conn.execute("DELETE FROM pgvision.models WHERE model_id = %s", (model["model_id"],))
    conn.close()
    return runs


def measure_images(url, conn, name, model, x, queries, truth, row_of, quantization, a) -> dict:
    n, dims = x.shape
    conn.execute("CHECKPOINT")
    qz_sql = get_model(conn, name)["quantization"] if quantization == "auto" else quantization
    t = time.perf_counter()
    if quantization == "auto":  # what a load builds: the shape chosen by size (pgvision.index.shape)
        index = ddl.set_index(conn, name)
    else:
        index = ddl.set_index(conn, name, quantization=quantization, m=a.m, ef_construction=a.ef_construction)
    build_s = time.perf_counter() - t
    built = get_model(conn, name)
    t = time.perf_counter()
    choice = recall_target.choose_setting(conn, name, 0.95)
    choose_s = time.perf_counter() - t
    ef = choice.value
    api = "SELECT image_id FROM pgvision.search_images(%s, 10, %s)"
    # search_images v2 (0006: every call plans _nearest's query text), same run, same index
    common.install_variant(conn, "bench_prev", "search_images", "functions/search_images.v2.sql",
                    {"pgvision.search_images(": "bench_prev.search_images_v2(",
                     "search_images.label": "search_images_v2.label"})
    api_v2 = "SELECT image_id FROM bench_prev.search_images_v2(%s, 10, %s)"
    raw = raw_sql(model["model_id"], dims, qz_sql)
    raw_args = (lambda q: {"q": q, "ef": ef}) if qz_sql == "binary" else (lambda q: (q,))
    # what search_images returns besides the id: the same raw query, joined to images
    raw_images = (f"SELECT c.image_id, i.uri, i.label FROM ({raw}) c "
                  "JOIN pgvision.images i ON i.image_id = c.image_id")
    raw_conn = common.connect(url)
    raw_conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    for q in queries[:20]:
        conn.execute(api, (q, name)).fetchall()
        conn.execute(api_v2, (q, name)).fetchall()
        raw_conn.execute(raw, raw_args(q)).fetchall()
        raw_conn.execute(raw_images, raw_args(q)).fetchall()
    res: dict = {}

    def m_api():
        res["api"] = timed(lambda q: [r[0] for r in conn.execute(api, (q, name))], queries)

    def m_api_v2():
        res["api_v2"] = timed(lambda q: [r[0] for r in conn.execute(api_v2, (q, name))], queries)

    def m_raw():
        res["raw"] = timed(lambda q: [r[0] for r in raw_conn.execute(raw, raw_args(q))], queries)

    def m_raw_images():
        res["raw_images"] = timed(lambda q: [r[0] for r in raw_conn.execute(raw_images, raw_args(q))], queries)

    def m_numpy():
        res["numpy"] = timed(lambda q: np.argpartition(-(x @ q), 10)[:10], queries)

    lat = {"api": [], "api_v2": [], "raw": [], "raw_images": [], "numpy": []}
    order = [("api", m_api), ("raw", m_raw), ("api_v2", m_api_v2), ("raw_images", m_raw_images), ("numpy", m_numpy)]
    per_rep = []
    for rep in range(a.reps):
        qps = {}
        for key, fn in order[rep % len(order):] + order[:rep % len(order)]:  # interleaved rounds
            fn()
            lat[key] += res[key][0]
            qps[key] = len(res[key][0]) / sum(res[key][0])
        per_rep.append(qps)

    def recall(got):
        return float(np.mean([len({row_of[i] for i in g} & t) / 10 for g, t in zip(got, truth, strict=True)]))

    out = {"rows": n, "dims": dims, "quantization": quantization, "build_s": build_s, "index_mb": index_mb(conn, index),
           "ef_search": ef, "stored_recall": choice.recall, "choose_s": choose_s, "tried": choice.tried,
           "api": stats(lat["api"]), "api_v2": stats(lat["api_v2"]), "raw": stats(lat["raw"]),
           "raw_images": stats(lat["raw_images"]),
           "numpy": stats(lat["numpy"]), "per_rep_qps": per_rep,
           "api_recall": recall(res["api"][1]), "api_v2_recall": recall(res["api_v2"][1]),
           "raw_recall": recall(res["raw"][1])}
    out["api_vs_raw_qps"] = out["api"]["qps"] / out["raw"]["qps"]
    out["api_v2_vs_raw_qps"] = out["api_v2"]["qps"] / out["raw"]["qps"]
    out["api_vs_raw_images_qps"] = out["api"]["qps"] / out["raw_images"]["qps"]
    out["api_vs_raw_by_rep"] = [r["api"] / r["raw"] for r in per_rep]
    out["shape"] = {"m": built["hnsw_m"], "ef_construction": built["hnsw_ef_construction"],
                    "quantization": built["quantization"], "index_shape": built["index_shape"]}
    full = "SELECT image_id FROM pgvision.search_images(%s, 10, %s, ef_search => %s)"
    out["empty"] = common.empty_answers(conn, full, name, x, queries, ef, a.reps)
    out["empty_vs_full_p99"] = (out["empty"]["empty answer (max_distance)"]["p99_ms"]
                                / out["empty"]["full answer"]["p99_ms"])
    print(f"  images {n:,} x {dims}, quantization {quantization} ({built['quantization']}, {built['index_shape']}), "
          f"m {built['hnsw_m']} / ef_construction {built['hnsw_ef_construction']}: build {build_s:.1f} s, "
          f"index {out['index_mb']:.0f} MB, "
          f"ef_search {ef} (stored recall {choice.recall:.3f}, tried {choice.tried}, {choose_s:.1f} s); "
          f"search_images recall@10 {out['api_recall']:.3f} p50 {out['api']['p50_ms']:.2f} p99 "
          f"{out['api']['p99_ms']:.2f} ms {out['api']['qps']:.0f} QPS; raw {out['raw']['qps']:.0f} QPS "
          f"(recall {out['raw_recall']:.3f}); numpy {out['numpy']['qps']:.0f} QPS; "
          f"api/raw {out['api_vs_raw_qps']:.2f}x (by round {', '.join(f'{v:.2f}' for v in out['api_vs_raw_by_rep'])}); "
          f"search_images v2 {out['api_v2']['qps']:.0f} QPS (recall {out['api_v2_recall']:.3f}), "
          f"v2/raw {out['api_v2_vs_raw_qps']:.2f}x; raw + images {out['raw_images']['qps']:.0f} QPS, "
          f"api/(raw + images) {out['api_vs_raw_images_qps']:.2f}x; empty answers p99 "
          f"{out['empty_vs_full_p99']:.2f}x a full answer's", flush=True)
    raw_conn.close()
    return out


def store_faces(conn, name: str, x: np.ndarray, who: np.ndarray) -> tuple[int, np.ndarray]:
    """images, identities, faces rows in SQL, then the embeddings by pgvision's binary COPY."""
    n, dims = x.shape
    model_id = register_model(conn, ModelSpec(name, "face", dims, "l2", normalized=True, threshold=0.6))
    ids_n = int(who.max()) + 1
    ident = np.array([r[0] for r in conn.execute(
        "INSERT INTO pgvision.identities (name) SELECT %s || '-' || g FROM generate_series(0, %s - 1) g "
        "RETURNING identity_id", (name, ids_n))], dtype=np.int64)
    face_id = np.array([r[0] for r in conn.execute(
        "WITH i AS (INSERT INTO pgvision.images (sha256, uri) "
        "           SELECT sha256((%s || g)::bytea), 'bench:' || %s || '/' || g "
        "           FROM generate_series(0, %s - 1) g RETURNING image_id) "
        "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, identity_id) "
        "SELECT i.image_id, 'bench', 0, 0, 10, 10, (%s::bigint[])[row_number() OVER (ORDER BY i.image_id)] "
        "FROM i ORDER BY i.image_id RETURNING face_id", (name, name, n, ident[who].tolist()))], dtype=np.int64)
    for i in range(0, n, 5000):
        with conn.transaction():
            pg_copy.copy_vectors(conn, "face_embeddings", "face_id", model_id, face_id[i:i + 5000], x[i:i + 5000])
    return model_id, ident, face_id


def run_faces(url: str, n: int, a) -> dict:
    dims, name = 128, f"faces-{n}"
    x, who, people = families(n, dims, seed=n)
    rng = np.random.default_rng(n + 1)
    pw = rng.integers(0, len(people), a.probes)
    probes = people[pw] + 0.25 * rng.standard_normal((a.probes, dims)).astype(np.float32) / np.sqrt(dims)
    probes = (probes / np.linalg.norm(probes, axis=1, keepdims=True)).astype(np.float32)
    conn = common.connect(url)
    conn.execute("SET max_parallel_workers_per_gather = 0")
    t = time.perf_counter()
    model_id, ident, face_ids = store_faces(conn, name, x, who)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    index = ddl.ensure_index(conn, model_id)
    build_s = time.perf_counter() - t
    sql = "SELECT identity_id FROM pgvision.identify(%s, model => %s, candidates => %s)"

    def call(c, statement=sql):
        return lambda q: (conn.execute(statement, (q, name, c)).fetchone() or [None])[0]

    no_stats = conn.execute("SELECT count(*) = 0 FROM pg_stats WHERE schemaname = 'pgvision' "
                            "AND tablename IN ('faces', 'face_embeddings')").fetchone()[0]
    before, _ = timed(call(5), probes[:50])
    conn.execute("ANALYZE pgvision.faces")
    conn.execute("ANALYZE pgvision.face_embeddings")
    conn.execute("ANALYZE pgvision.identity_templates")
    brute = common.BruteForce(x, who, "l2")
    b_lat, b_best = timed(lambda q: brute.identify(q)[0][0], probes)
    exact = [int(ident[b]) for b in b_best]
    out = {"faces": len(x), "people": len(people), "dims": dims, "load_s": load_s, "build_s": build_s,
           "index_mb": index_mb(conn, index),
           "template_index_mb": index_mb(conn, f"identity_templates_model_{model_id}_hnsw"),
           "no_stats_at_first_call": bool(no_stats),
           "before_analyze": stats(before), "brute": stats(b_lat), "by_candidates": {}}
    # Why v4 missed: does the photo index's walk (depth 200, ef_search 200, as v4 for
    # candidates 5) return the gallery's exact nearest photo, and does the template index
    # (21 templates at ef_search 105, as v5) return the exact nearest template?
    nearest_face = [int(face_ids[int(np.argmin(np.linalg.norm(x - q, axis=1)))]) for q in probes]
    nearest_template = [int(ident[int(np.argmin(np.linalg.norm(brute.templates - q, axis=1)))]) for q in probes]
    photo_hit, template_hit = [], []
    for q, f, t in zip(probes, nearest_face, nearest_template, strict=True):
        got = {r[0] for r in conn.execute(
            "SELECT item_id FROM pgvision._nearest(pgvision._resolve_model(%s, 'face'), %s, 200, "
            "enrolled_only => true, "
            "ef_search => 200)", (name, q))}
        photo_hit.append(f in got)
        with conn.transaction():
            conn.execute("SET LOCAL hnsw.ef_search = 105")
            conn.execute("SET LOCAL enable_sort = off")
            got = {r[0] for r in conn.execute(
                f"SELECT identity_id FROM pgvision.identity_templates WHERE model_id = {model_id} "
                f"ORDER BY template::vector({dims}) <-> %s::vector({dims}) LIMIT 21", (q,))}
        template_hit.append(t in got)
    out["photo_ann_has_nearest_photo"] = float(np.mean(photo_hit))
    out["template_ann_has_nearest_template"] = float(np.mean(template_hit))
    print(f"  faces {len(x):,}: exact nearest photo among the photo index's 200 (ef_search 200): "
          f"{out['photo_ann_has_nearest_photo']:.3f}; exact nearest template among the template index's 21 "
          f"(ef_search 105): {out['template_ann_has_nearest_template']:.3f}", flush=True)
    # identify v4 (0006) and v5 with a smaller photo depth, side by side with v5 in one run
    common.install_variant(conn, "bench_prev", "_identify_v4", "functions/_identify.v4.sql",
                    {"pgvision._identify(": "bench_prev._identify_v4("})
    common.install_variant(conn, "bench_prev", "_identify_v5_d100", "functions/_identify.v5.sql",
                    {"pgvision._identify(": "bench_prev._identify_v5_d100(",
                     "c_min_depth constant integer := 200;": "c_min_depth constant integer := 100;"})
    variants = {"v5": sql}
    for v in a.identify_variants:
        variants[v] = (f"SELECT identity_id FROM bench_prev._identify_{v}(pgvision._resolve_model(%(m)s, 'face'), "
                       "%(q)s, NULL, %(c)s, NULL, NULL)")

    def call_variant(v, c):
        if v == "v5":
            return call(c)
        return lambda q: (conn.execute(variants[v], {"q": q, "m": name, "c": c}).fetchone() or [None])[0]

    for c in a.candidates:
        keys = list(variants)
        for v in keys:
            timed(call_variant(v, c), probes[:10])  # warm
        lat: dict = {v: [] for v in keys}
        got: dict = {}
        for rep in range(a.reps):
            for v in keys[rep % len(keys):] + keys[:rep % len(keys)]:  # interleaved rounds
                lat_v, got[v] = timed(call_variant(v, c), probes)
                lat[v] += lat_v
        for v in keys:
            agree = float(np.mean([g == e for g, e in zip(got[v], exact, strict=True)]))
            depth = min(1000, max(100 if v == "v5_d100" else 200, 20 * c))
            out["by_candidates"][f"{c}" if v == "v5" else f"{c}/{v}"] = {**stats(lat[v]), "agreement": agree,
                                                                       "depth": depth, "variant": v}
            r = out["by_candidates"][f"{c}" if v == "v5" else f"{c}/{v}"]
            label = "(installed)" if v == "v5" else v
            print(f"  faces {len(x):,} x {dims} ({len(people):,} people): identify {label}, candidates {c} (depth "
                  f"{depth}): agreement {agree:.4f}, p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms", flush=True)
    print(f"  faces {len(x):,}: load {load_s:.1f} s (with templates), build {build_s:.1f} s, "
          f"index {out['index_mb']:.0f} MB "
          f"(templates {out['template_index_mb']:.0f} MB), "
          f"before ANALYZE (no statistics: {bool(no_stats)}) p50 {out['before_analyze']['p50_ms']:.2f} "
          f"p99 {out['before_analyze']['p99_ms']:.2f} ms; numpy brute force p50 {out['brute']['p50_ms']:.2f} ms",
          flush=True)
    conn.execute("DELETE FROM pgvision.models WHERE model_id = %s", (model_id,))
    conn.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="image vectors, 512-d (0 = skip; default 100k)")
    ap.add_argument("--faces", type=int, default=100_000, help="face photos, 128-d (0 = skip; default 100k)")
    ap.add_argument("--probes", type=int, default=200, help="held-out queries / probe faces (default 200)")
    ap.add_argument("--candidates", type=int, nargs="+", default=[5, 25, 50],
                    help="identify candidates tried (depth max(200, 20 x candidates); default 5 25 50)")
    ap.add_argument("--identify-variants", nargs="*", choices=["v4", "v5_d100"], default=["v4", "v5_d100"],
                    help="identify versions timed beside v5 in the same run: v4 (0006), v5 with photo depth "
                         "100 (default both)")
    ap.add_argument("--quantization", nargs="+", choices=["auto", "none", "halfvec", "binary"], default=["none"],
                    help="image index quantizations measured, one build each in this order; auto = what a "
                         "load builds (shape and quantization chosen by size, --m / --ef-construction ignored) "
                         "(default none)")
    ap.add_argument("--m", type=int, default=None, help="images' HNSW m (default: the model's, 16)")
    ap.add_argument("--ef-construction", type=int, default=None,
                    help="images' HNSW ef_construction (default: the model's, 64)")
    ap.add_argument("--out", default="scale", help="name of the results file (default scale)")
    common.add_server_args(ap)
    a = ap.parse_args()
    results = {"benchmark": "scale", "args": {k: str(v) for k, v in vars(a).items()}}
    with common.bench_database("scale", a.data_dir) as url:
        with common.connect(url) as conn:
            results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        if a.rows:
            results["images"] = run_images(url, a.rows, a)
        if a.faces:
            results["faces"] = run_faces(url, a.faces, a)
    common.write_results(a.out, results)


if __name__ == "__main__":
    main()
