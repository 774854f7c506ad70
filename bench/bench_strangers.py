"""Empty answers in identify: stranger probes beside enrolled ones, on the same gallery.

A gallery of ``--faces`` 128-d unit vectors (L2, threshold 0.6): people in families of 5
look-alikes, 1..19 photos each (the generator of bench_scale.py's faces), every photo
enrolled. Probes, one at a time, interleaved rounds:

* enrolled: a person's centre plus a little noise (as bench_scale.py), whose answer matches;
* strangers: the same recipe around people of new families, never enrolled (random unit
  directions: L2 distance about 1.4 from everyone), whose answer is "unknown".

Reports p50 / p99 ms of ``identify(q, candidates => 5)`` for each kind, the share of
answers with a match, and p99(strangers) / p99(enrolled) (the issue's goal: <= 2 at 1M).

Example::

    PYTHONPATH=loader .venv/bin/python bench/bench_strangers.py --faces 50000 --probes 300 --reps 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import common
from pgvision.index import ddl
from pgvision.ingest import pg_copy
from pgvision.registry import ModelSpec, register_model


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def gallery(n: int, dims: int, seed: int, family_size: int = 5, max_photos: int = 19):
    """About ``n`` photos of people in families of look-alikes: (photos, person of each, person centres)."""
    rng = np.random.default_rng(seed)
    n_people = max(2, n // ((1 + max_photos) // 2))
    fam = unit(rng.standard_normal((max(1, n_people // family_size), dims)))
    people = unit(
        fam[np.arange(n_people) // family_size % len(fam)] + 0.6 * unit(rng.standard_normal((n_people, dims)))
    )
    who = np.repeat(np.arange(n_people), rng.integers(1, max_photos + 1, n_people))[:n]
    photos = unit(people[who] + 0.25 * unit(rng.standard_normal((len(who), dims))))
    return photos, who, people


def store(conn, name: str, x: np.ndarray, who: np.ndarray) -> int:
    """Identities, images and faces rows in SQL, embeddings by pgvision's COPY; returns the model_id."""
    n, dims = x.shape
    model_id = register_model(conn, ModelSpec(name, "face", dims, "l2", normalized=True, threshold=0.6))
    ident = [
        r[0]
        for r in conn.execute(
            "INSERT INTO pgvision.identities (name) SELECT %s || '-' || g FROM generate_series(0, %s - 1) g "
            "RETURNING identity_id",
            (name, int(who.max()) + 1),
        )
    ]
    face_id = np.array(
        [
            r[0]
            for r in conn.execute(
                "WITH i AS (INSERT INTO pgvision.images (sha256, uri) "
                "SELECT sha256((%s || g)::bytea), 'bench:' || %s || '/' || g "
                "FROM generate_series(0, %s - 1) g RETURNING image_id) "
                "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, "
                "identity_id) "
                "SELECT i.image_id, 'bench', 0, 0, 10, 10, (%s::bigint[])[row_number() OVER (ORDER BY i.image_id)] "
                "FROM i ORDER BY i.image_id RETURNING face_id",
                (name, name, n, [ident[w] for w in who]),
            )
        ],
        dtype=np.int64,
    )
    for i in range(0, n, 5000):
        with conn.transaction():
            pg_copy.copy_vectors(conn, "face_embeddings", "face_id", model_id, face_id[i : i + 5000], x[i : i + 5000])
    return model_id


def run(a) -> dict:
    dims, name = 128, f"strangers-{a.faces}"
    x, who, people = gallery(a.faces, dims, seed=a.faces)
    rng = np.random.default_rng(a.faces + 1)
    noise = 0.25 * rng.standard_normal((a.probes, dims)).astype(np.float32) / np.sqrt(dims)
    probes = {
        "enrolled": unit(people[rng.integers(0, len(people), a.probes)] + noise),
        "strangers": unit(unit(rng.standard_normal((a.probes, dims))) + noise),
    }
    res: dict = {"faces": len(x), "people": len(people), "probes": a.probes, "reps": a.reps}
    with common.bench_database("strangers", a.data_dir) as url:
        conn = common.connect(url)
        common.print_machine(info := common.machine(conn))
        res["machine"] = info
        conn.execute("SET max_parallel_workers_per_gather = 0")
        model_id = store(conn, name, x, who)
        ddl.ensure_index(conn, model_id)
        conn.execute("ANALYZE pgvision.faces, pgvision.face_embeddings, pgvision.identity_templates")
        sql = "SELECT bool_or(is_match) FROM pgvision.identify(%s, model => %s, candidates => 5)"
        for q in probes["enrolled"][:20]:
            conn.execute(sql, (q, name)).fetchall()
        lat: dict[str, list[float]] = {k: [] for k in probes}
        matched: dict[str, list[bool]] = {k: [] for k in probes}
        for r in range(a.reps):
            for kind in list(probes) if r % 2 == 0 else list(probes)[::-1]:  # interleaved rounds
                for q in probes[kind]:
                    t = time.perf_counter()
                    matched[kind].append(bool(conn.execute(sql, (q, name)).fetchone()[0]))
                    lat[kind].append((time.perf_counter() - t) * 1000)
        res["by_kind"] = {
            k: {
                "p50_ms": common.percentile(v, 50),
                "p99_ms": common.percentile(v, 99),
                "matched": float(np.mean(matched[k])),
            }
            for k, v in lat.items()
        }
        res["p99_ratio"] = res["by_kind"]["strangers"]["p99_ms"] / res["by_kind"]["enrolled"]["p99_ms"]
        common.print_table(
            ["probes", "p50 ms", "p99 ms", "share matched"],
            [[k, v["p50_ms"], v["p99_ms"], v["matched"]] for k, v in res["by_kind"].items()],
            title=f"identify, {len(x):,} enrolled faces x {dims} ({len(people):,} people), candidates 5",
        )
        print(f"p99 strangers / enrolled: {res['p99_ratio']:.2f}")
        conn.close()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces", type=int, default=50_000, help="enrolled face photos, 128-d (default 50,000)")
    ap.add_argument("--probes", type=int, default=300, help="probes of each kind (default 300)")
    ap.add_argument("--out", default=None, help="results file name (default strangers_<faces>)")
    common.add_server_args(ap)
    a = ap.parse_args()
    common.write_results(a.out or f"strangers_{a.faces}", run(a))


if __name__ == "__main__":
    main()
