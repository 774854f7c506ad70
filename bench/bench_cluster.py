"""Clustering at scale: full passes at growing N, the incremental pass, purity on look-alikes.

Faces are bench_scale.py's look-alike families (the same generator, copied here: families
of 5 similar people, 1-19 photos each, 128-d unit vectors; same-person photo pairs about
0.35 L2 apart, siblings' photos about 0.7). They are stored *without* identities, the
model's HNSW index is built (m 16, ef_construction 64), and SQL clusters them:

1. full pass (``pgvision.cluster_start(mode => 'full')`` + ``cluster_step`` per 1,000 faces,
   what ``pgvision people cluster --full`` runs) at each of ``--sizes``; seconds, faces/s,
   BCubed precision / recall against the true people, and purity on the families (share
   of found people that mix siblings);
2. incremental pass for ``--new`` faces held out of the largest gallery, loaded after its
   full pass (what ``faces load --cluster`` runs);
3. 1M from the measured rates: full pass time ~ N log N fitted through the measured sizes,
   and the incremental pass per new face ~ log N (both *extrapolated*, labelled so).

Run (about 8 min on the 2-core box):
    python bench/bench_cluster.py --sizes 25000 50000 100000 --new 1000
The incremental pass alone, into galleries whose people are given by the truth:
    python bench/bench_cluster.py --sizes 100000 300000 --new 1000 --gallery-by-truth --out cluster_incremental
Closer look-alikes (siblings' photos about 0.5 apart, as far as the cut):
    python bench/bench_cluster.py --sizes 25000 --new 0 --family-spread 0.35 --out cluster_lookalikes
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from common import (
    add_server_args,
    bench_database,
    connect,
    machine,
    print_machine,
    print_table,
    write_results,
)
from pgvision.index.ddl import ensure_index
from pgvision.ingest import pg_copy
from pgvision.people.cluster import run_pass
from pgvision.people.scores import score_clustering
from pgvision.registry import ModelSpec, register_model


def families(
    n_photos: int,
    dims: int,
    seed: int,
    family_size: int = 5,
    max_photos: int = 19,
    family_spread: float = 0.6,
    person_spread: float = 0.25,
):
    """bench_scale.py's generator: (photos (n, d) float32 unit vectors, person of each photo)."""
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    n_people = max(2, n_photos // ((1 + max_photos) // 2))
    fam = unit(rng.standard_normal((max(1, n_people // family_size), dims)).astype(np.float32))
    people = unit(
        fam[np.arange(n_people) // family_size % len(fam)]
        + family_spread * unit(rng.standard_normal((n_people, dims)).astype(np.float32))
    )
    counts = rng.integers(1, max_photos + 1, n_people)
    who = np.repeat(np.arange(n_people), counts)[:n_photos]
    photos = unit(people[who] + person_spread * unit(rng.standard_normal((len(who), dims)).astype(np.float32)))
    return photos.astype(np.float32), who


def store(conn, model_id: int, x: np.ndarray, start: int) -> np.ndarray:
    """Images and faces rows without identity, then the embeddings by binary COPY; face ids."""
    n = len(x)
    face_id = np.array(
        [
            r[0]
            for r in conn.execute(
                "WITH i AS (INSERT INTO pgvision.images (sha256, uri) SELECT sha256(('p' || g)::bytea), 'bench:p' || g "
                "           FROM generate_series(%s, %s - 1) g RETURNING image_id) "
                "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom) "
                "SELECT i.image_id, 'bench', 0, 0, 10, 10 FROM i ORDER BY i.image_id RETURNING face_id",
                (start, start + n),
            )
        ],
        dtype=np.int64,
    )
    for i in range(0, n, 5000):
        with conn.transaction():
            pg_copy.copy_vectors(conn, "face_embeddings", "face_id", model_id, face_id[i : i + 5000], x[i : i + 5000])
    return face_id


def scores(conn, face_id: np.ndarray, who: np.ndarray, family_size: int = 5) -> dict:
    person = dict(
        conn.execute(
            "SELECT face_id, identity_id FROM pgvision.faces WHERE face_id = ANY(%s)", (face_id.tolist(),)
        ).fetchall()
    )
    found = [person[int(f)] for f in face_id]
    s = score_clustering([int(w) for w in who], found)
    members: dict[int, set] = {}
    for p, w in zip(found, who, strict=True):
        if p is not None:
            members.setdefault(p, set()).add(int(w))
    mixed = sum(1 for ws in members.values() if len(ws) > 1)
    siblings = sum(1 for ws in members.values() if len({w // family_size for w in ws}) < len(ws) and len(ws) > 1)
    return {
        "bcubed_precision": s.bcubed_precision,
        "bcubed_recall": s.bcubed_recall,
        "people_found": s.clusters,
        "people_true": s.labels,
        "unassigned": s.unassigned / s.items,
        "mixed_people": mixed,
        "mixed_siblings": siblings,
    }


def run_size(url: str, n: int, new: int, a) -> dict:
    x, who = families(n + new, 128, seed=n, family_spread=a.family_spread)
    held_x, held_who = x[n:], who[n:]
    x, who = x[:n], who[:n]
    with connect(url) as conn:
        conn.execute("DELETE FROM pgvision.models")
        conn.execute("DELETE FROM pgvision.images")
        model_id = register_model(conn, ModelSpec("bench-faces", "face", 128, "l2", normalized=True, threshold=0.6))
        t = time.perf_counter()
        face_id = store(conn, model_id, x, 0)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        ensure_index(conn, model_id)
        conn.execute("ANALYZE")
        index_s = time.perf_counter() - t
        if a.gallery_by_truth:
            # the gallery as a perfect pass would leave it: each true person an unnamed person
            t = time.perf_counter()
            ident = np.array(
                [
                    r[0]
                    for r in conn.execute(
                        "INSERT INTO pgvision.identities (name) SELECT NULL FROM generate_series(1, %s) "
                        "RETURNING identity_id",
                        (int(who.max()) + 1,),
                    )
                ],
                dtype=np.int64,
            )
            with conn.transaction():
                conn.execute("SELECT set_config('pgvision.cluster_pass', '0', true)")
                conn.execute(
                    "UPDATE pgvision.faces f SET identity_id = x.person, assigned_by = 'cluster' "
                    "FROM unnest(%s::bigint[], %s::bigint[]) x(face_id, person) WHERE f.face_id = x.face_id",
                    (face_id.tolist(), ident[who].tolist()),
                )
            conn.execute("ANALYZE")
            out = {"faces": n, "load_s": load_s, "index_s": index_s, "truth_assign_s": time.perf_counter() - t}
        else:
            r = run_pass(
                conn, "bench-faces", "full", a.max_distance, a.min_faces, a.neighbours, a.batch_size, progress=False
            )
            out = {
                "faces": n,
                "load_s": load_s,
                "index_s": index_s,
                "full_s": r.seconds,
                "full_faces_per_s": n / r.seconds,
                "assigned": r.assigned,
                "created": r.created,
                **scores(conn, face_id, who),
            }
        if len(held_x):
            new_ids = store(conn, model_id, held_x, n)
            conn.execute("ANALYZE pgvision.faces")
            r2 = run_pass(
                conn,
                "bench-faces",
                "incremental",
                a.max_distance,
                a.min_faces,
                a.neighbours,
                a.batch_size,
                progress=False,
            )
            person = dict(
                conn.execute(
                    "SELECT face_id, identity_id FROM pgvision.faces WHERE face_id = ANY(%s)", (new_ids.tolist(),)
                ).fetchall()
            )
            # the generator may give fewer photos than asked: count what was held out
            out.update(
                {
                    "new": len(held_x),
                    "incremental_s": r2.seconds,
                    "new_assigned": sum(v is not None for v in person.values()),
                    "new_people": r2.created,
                }
            )
            del held_who
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[25_000, 50_000, 100_000], help="gallery sizes (faces)")
    ap.add_argument("--out", default="cluster", help="name of the results file (default cluster)")
    ap.add_argument("--new", type=int, default=1000, help="faces added to the largest gallery for the incremental pass")
    ap.add_argument("--max-distance", type=float, default=0.5, help="close-pair distance, L2 (default 0.5, dlib's)")
    ap.add_argument(
        "--family-spread",
        type=float,
        default=0.6,
        help="family centre -> person offset, L2 (default 0.6, bench_scale.py's; smaller = closer siblings)",
    )
    ap.add_argument(
        "--gallery-by-truth",
        action="store_true",
        help="skip the full pass: give each true person an unnamed person, then time the incremental pass only",
    )
    ap.add_argument("--min-faces", type=int, default=3)
    ap.add_argument("--neighbours", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=1000)
    add_server_args(ap)
    a = ap.parse_args()
    results = {"sizes": []}
    with bench_database("cluster", a.data_dir) as url:
        with connect(url) as conn:
            info = machine(conn)
        print_machine(info)
        results["machine"] = info
        for n in sorted(a.sizes):
            res = run_size(url, n, a.new if n == max(a.sizes) or a.gallery_by_truth else 0, a)
            results["sizes"].append(res)
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}, flush=True)
    if a.gallery_by_truth:
        print_table(
            ["gallery", "new faces", "incremental pass s", "new faces assigned"],
            [
                [f"{r['faces']:,}", r.get("new", 0), f"{r.get('incremental_s', 0):.1f}", r.get("new_assigned", "-")]
                for r in results["sizes"]
            ],
            title="Incremental pass into a gallery of people (by truth)",
        )
        print("results:", write_results(a.out, results))
        return
    rows = [
        [
            r["faces"],
            f"{r['full_s']:.1f}",
            f"{r['full_faces_per_s']:.0f}",
            f"{r['bcubed_precision']:.4f}",
            f"{r['bcubed_recall']:.4f}",
            f"{r['people_found']} / {r['people_true']}",
            r["mixed_siblings"],
            f"{r['unassigned']:.1%}",
        ]
        for r in results["sizes"]
    ]
    print_table(
        [
            "faces",
            "full pass s",
            "faces/s",
            "BCubed P",
            "BCubed R",
            "people found / true",
            "people mixing siblings",
            "unassigned",
        ],
        rows,
        title="Full clustering pass (measured)",
    )
    big = results["sizes"][-1]
    # N log N through the largest measured point; per new face ~ log N
    c = big["full_s"] / (big["faces"] * math.log(big["faces"]))
    full_1m = c * 1e6 * math.log(1e6)
    extra = {"full_1m_s_extrapolated": full_1m}
    if "incremental_s" in big:
        inc_1m = big["incremental_s"] * math.log(1e6 + a.new) / math.log(big["faces"] + a.new)
        extra["incremental_1m_s_extrapolated"] = inc_1m
        print_table(
            ["gallery", "new faces", "incremental pass s", "new faces assigned"],
            [
                [big["faces"], big["new"], f"{big['incremental_s']:.1f}", big["new_assigned"]],
                ["1,000,000 (extrapolated, ~log N per face)", big["new"], f"{inc_1m:.1f}", "-"],
            ],
            title="Incremental pass",
        )
    print_table(
        ["faces", "full pass s"],
        [[f"{r['faces']:,}", f"{r['full_s']:.1f}"] for r in results["sizes"]]
        + [["1,000,000 (extrapolated, N log N)", f"{full_1m:.0f}"]],
        title="Full pass time",
    )
    results.update(extra)
    results["family_spread"] = a.family_spread
    print("results:", write_results(a.out, results))


if __name__ == "__main__":
    main()
