"""Duplicates: precision and recall per tier on a labelled set of real photos, the thresholds
chosen on one half of it and measured on the other, and the time to group 100k images.

Labelled set (``--calibrate``, the default): from ``../shared/data``, each *source* photo
(the 100 ImageNet samples and the first photo of each of the 40 LFW people) gets one copy of
each kind of the ``same`` tier's list, every copy re-saved without metadata:

    jpeg      JPEG at quality 30-95 (uniform)
    png       PNG (lossless, JPEG -> PNG)
    resize    25-100 % of the side (uniform; LANCZOS), JPEG 90
    crop      up to 10 % off the width and off the height (uniform; split at random between
              the two sides), JPEG 90
    light     brightness and contrast x 0.9-1.1 (uniform, each), JPEG 90
    all       resize 50-100 %, crop up to 10 %, brightness and contrast x 0.9-1.1, JPEG 30-95

Distractors: the next three photos of each LFW person, different photos of the same person
(LFW deep-funneled: aligned, similar framing), which are not duplicates of anything. Each
family (a source and its copies) is one folder, each distractor a folder of its own, so the
folder name (the label) is the truth. Everything is loaded through ``pgvision load``
(efficientnet-lite0 features, cosine distance).

Scoring: pairs. The pairs predicted are all pairs of images in one group; the true pairs are
all pairs of one family. Precision = true pairs predicted / pairs predicted; recall = true
pairs predicted / true pairs. There are no labelled bursts of near-identical shots in
../shared: tier ``similar`` is scored on the same truth (same-picture pairs), so its recall
here says how many same pictures the embedding alone groups, and its precision how often it
groups different photos of one person.

Threshold selection (kept here so it can be re-run for another model): the families are
split by index (even: calibration, odd: test; distractors likewise). Candidate pairs come
from ``pgvision._duplicate_pairs`` with open limits (both indexes, k 20, as duplicate_groups). On the calibration
half, for each limit on a grid, pairs are grouped (connected components) and scored:
  same:    the hash limit H and embedding limit E with the highest recall whose precision is
           >= 0.995 (margin over the 0.99 goal), ties to the smaller limits;
  similar: the largest E whose precision is >= 0.99.
The figures reported are then measured on the *test* half only, through the SQL function
``pgvision.duplicate_groups`` itself, at the chosen limits and at the functions' defaults.

Scale (``--scale N``): N synthetic images (clustered unit vectors of ``--dims`` dimensions,
10 % of them in families of 2-5 near-copies with a few hash bits flipped), stored with the
loader's COPY path, the model's HNSW index and the pHash index built, then
``duplicate_groups('same')`` and ``('similar')`` timed (one run each: minutes) and their pair
recall against the synthetic truth printed.

Usage::

    python bench/bench_duplicates.py --calibrate
    python bench/bench_duplicates.py --scale 100000
"""

from __future__ import annotations

import argparse
import hashlib
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common

SHARED = common.REPO.parent / "shared" / "data"
KINDS = ("jpeg", "png", "resize", "crop", "light", "all")


# ---------------------------------------------------------------- the labelled set


def _crop(im, rng: random.Random, most: float = 0.10):
    w, h = im.size
    cw, ch = rng.uniform(0, most) * w, rng.uniform(0, most) * h
    left, top = rng.uniform(0, cw), rng.uniform(0, ch)
    return im.crop((round(left), round(top), round(w - (cw - left)), round(h - (ch - top))))


def _light(im, rng: random.Random):
    from PIL import ImageEnhance

    im = ImageEnhance.Brightness(im).enhance(rng.uniform(0.9, 1.1))
    return ImageEnhance.Contrast(im).enhance(rng.uniform(0.9, 1.1))


def _resize(im, scale: float):
    from PIL import Image

    w, h = im.size
    return im.resize((max(16, round(w * scale)), max(16, round(h * scale))), Image.Resampling.LANCZOS)


def make_copy(src: Path, kind: str, out: Path, rng: random.Random) -> Path:
    """One transformed copy of ``src`` (see the module docstring), metadata stripped."""
    from PIL import Image

    im = Image.open(src).convert("RGB")
    quality = 90
    if kind == "jpeg":
        quality = rng.randint(30, 95)
    elif kind == "png":
        path = out.with_suffix(".png")
        im.save(path)
        return path
    elif kind == "resize":
        im = _resize(im, rng.uniform(0.25, 1.0))
    elif kind == "crop":
        im = _crop(im, rng)
    elif kind == "light":
        im = _light(im, rng)
    elif kind == "all":
        im = _light(_crop(_resize(im, rng.uniform(0.5, 1.0)), rng), rng)
        quality = rng.randint(30, 95)
    path = out.with_suffix(".jpg")
    im.save(path, quality=quality)
    return path


def build_set(
    root: Path, seed: int = 0, distractors: int = 3, people: int | None = None, imagenet: int | None = None
) -> dict:
    """Write the labelled set under ``root`` (``people`` / ``imagenet``: fewer sources, for a
    quick try); return counts."""
    import shutil

    rng = random.Random(seed)
    sources = sorted((SHARED / "imagenet_samples").glob("*.JPEG"))[:imagenet]
    others = []
    for person in sorted(p for p in (SHARED / "lfw_faces").iterdir() if p.is_dir())[:people]:
        photos = sorted(person.glob("*.jpg"))
        sources.append(photos[0])
        others.extend(photos[1 : 1 + distractors])
    for i, src in enumerate(sources):
        family = root / f"fam{i:04d}"
        family.mkdir(parents=True)
        shutil.copy(src, family / f"original{src.suffix.lower()}")
        for kind in KINDS:
            make_copy(src, kind, family / kind, rng)
    for j, photo in enumerate(others):
        folder = root / f"other{j:04d}"
        folder.mkdir(parents=True)
        shutil.copy(photo, folder / "photo.jpg")
    return {
        "families": len(sources),
        "copies_per_family": len(KINDS),
        "distractors": len(others),
        "images": len(sources) * (1 + len(KINDS)) + len(others),
    }


def split_of(label: str) -> str:
    """``calibration`` for even family / distractor numbers, ``test`` for odd ones."""
    return "calibration" if int(label[-4:]) % 2 == 0 else "test"


# ---------------------------------------------------------------- scoring


def components(pairs: list[tuple[int, int]]) -> dict[int, int]:
    """image_id -> root of its connected component (union-find)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def score(groups: dict[int, int], label: dict[int, str], keep: set[int]) -> tuple[float, float, int, int]:
    """Pair precision and recall of ``groups`` (image_id -> group) over the images ``keep``.

    Returns (precision, recall, pairs predicted, true pairs); precision 1.0 when nothing is predicted.
    """
    from collections import Counter
    from math import comb

    def family(i: int) -> str | None:
        return label[i] if label[i].startswith("fam") else None

    by_group: dict[int, list[int]] = {}
    for i, g in groups.items():
        if i in keep:
            by_group.setdefault(g, []).append(i)
    predicted = correct = 0
    for members in by_group.values():
        predicted += comb(len(members), 2)
        correct += sum(comb(n, 2) for f, n in Counter(family(i) for i in members).items() if f is not None)
    sizes = Counter(family(i) for i in keep if family(i) is not None)
    truth = sum(comb(n, 2) for n in sizes.values())
    return (correct / predicted if predicted else 1.0), (correct / truth if truth else 1.0), predicted, truth


def choose_limits(pairs: list[tuple[int, int, float, int]], label: dict[int, str], keep: set[int]) -> dict:
    """Grid search on the calibration images (see the module docstring for the rules)."""
    pairs = [p for p in pairs if p[0] in keep and p[1] in keep]
    grid_e = [round(x, 3) for x in np.arange(0.02, 0.61, 0.01)]
    rows = []
    for h in (4, 6, 8, 10, 12, 14, 16):
        for e in grid_e:
            chosen = [(a, b) for a, b, d, hd in pairs if d <= e and hd is not None and hd <= h]
            p, r, _, _ = score(components(chosen), label, keep)
            rows.append(("same", h, e, p, r))
    for e in grid_e:
        chosen = [(a, b) for a, b, d, _ in pairs if d <= e]
        p, r, _, _ = score(components(chosen), label, keep)
        rows.append(("similar", None, e, p, r))
    same = [r for r in rows if r[0] == "same" and r[3] >= 0.995]
    best_same = max(same, key=lambda r: (r[4], -r[1], -r[2]))
    similar = [r for r in rows if r[0] == "similar" and r[3] >= 0.99]
    best_similar = max(similar, key=lambda r: (r[2],))
    return {
        "same": {
            "max_hash_distance": best_same[1],
            "max_distance": best_same[2],
            "calibration_precision": best_same[3],
            "calibration_recall": best_same[4],
        },
        "similar": {
            "max_distance": best_similar[2],
            "calibration_precision": best_similar[3],
            "calibration_recall": best_similar[4],
        },
    }


def backend_cpu_seconds(conn) -> float | None:
    """CPU seconds (user + system) the connection's server backend has used so far, read from
    /proc when the server runs on this machine (the embedded one); None otherwise. On a
    shared box this is what the work costs, whatever share of the cores it was given."""
    import os

    pid = conn.info.backend_pid
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sql_groups(
    conn, tier: str, max_distance=None, max_hash_distance=None, cpu: list | None = None
) -> tuple[dict[int, int], float]:
    """``{image_id: group_id}`` from ``pgvision.duplicate_groups`` and its wall seconds
    (the backend's CPU seconds appended to ``cpu`` when given and readable)."""
    c0 = backend_cpu_seconds(conn)
    t = time.perf_counter()
    rows = conn.execute(
        "SELECT image_id, group_id FROM pgvision.duplicate_groups(%s, max_distance => %s::float8, "
        "max_hash_distance => %s::integer)",
        (tier, max_distance, max_hash_distance),
    ).fetchall()
    wall = time.perf_counter() - t
    c1 = backend_cpu_seconds(conn)
    if cpu is not None:
        cpu.append(None if c0 is None or c1 is None else c1 - c0)
    return dict(rows), wall


def calibrate(args) -> dict:
    with (
        tempfile.TemporaryDirectory(prefix="pgvision-dups-") as tmp,
        common.bench_database("duplicates", args.data_dir) as url,
    ):
        root = Path(tmp) / "set"
        counts = build_set(root, seed=args.seed, people=args.people, imagenet=args.imagenet)
        print(f"labelled set: {counts}")
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "from pgvision.cli import main; main()",
                "load",
                str(root),
                "--device",
                "cpu",
                "--quiet",
                "--database-url",
                url,
            ],
            check=True,
        )
        load_s = time.perf_counter() - t
        conn = common.connect(url)
        info = common.machine(conn)
        common.print_machine(info)
        label = dict(conn.execute("SELECT image_id, label FROM pgvision.images").fetchall())
        halves = {s: {i for i, lab in label.items() if split_of(lab) == s} for s in ("calibration", "test")}
        pairs = conn.execute(
            "SELECT p.a_id, p.b_id, p.distance, p.hash_distance FROM pgvision._duplicate_pairs("
            "pgvision._resolve_model(NULL, 'image'), 'same', 2.0, 64, 20) p"
        ).fetchall()
        limits = choose_limits(pairs, label, halves["calibration"])
        print(f"chosen on the calibration half: {limits}")
        rows = []
        for tier in ("same", "similar"):
            lim = limits[tier]
            for name, kwargs in (
                ("chosen", {"max_distance": lim["max_distance"], "max_hash_distance": lim.get("max_hash_distance")}),
                ("default", {}),
            ):
                groups, seconds = sql_groups(conn, tier, **kwargs)
                for half in ("calibration", "test"):
                    p, r, pred, truth = score(groups, label, halves[half])
                    rows.append(
                        [
                            tier,
                            name,
                            kwargs.get("max_distance", "default"),
                            kwargs.get("max_hash_distance", "default") if tier == "same" else "",
                            half,
                            f"{p:.4f}",
                            f"{r:.4f}",
                            pred,
                            truth,
                            f"{seconds:.2f}",
                        ]
                    )
        common.print_table(
            [
                "tier",
                "limits",
                "max_distance",
                "max_hash",
                "half",
                "precision",
                "recall",
                "pairs predicted",
                "true pairs",
                "seconds (all images)",
            ],
            rows,
            title=f"pair precision / recall ({counts['images']} images, loaded in {load_s:.0f} s)",
        )
        kinds = distances_by_kind(conn, pairs, label)
        misses = errors_on_test(conn, label, halves["test"])
        results = {
            "set": counts,
            "machine": info,
            "limits": limits,
            "rows": rows,
            "load_seconds": load_s,
            "by_kind": kinds,
            "test_errors": misses,
        }
        common.write_results("duplicates_calibrate", results)
        return results


def _stats(xs: list[float]) -> list[str]:
    xs = sorted(xs)
    if not xs:
        return ["", "", "", ""]
    return [fmt_num(xs[0]), fmt_num(common.percentile(xs, 50)), fmt_num(common.percentile(xs, 95)), fmt_num(xs[-1])]


def fmt_num(x: float) -> str:
    return f"{x:.3f}" if isinstance(x, float) and not float(x).is_integer() else f"{x:g}"


def distances_by_kind(conn, pairs, label: dict[int, str]) -> dict:
    """Hash and embedding distance of each copy to its original, by kind of copy; and of the
    nearest different photos (candidate pairs of two families or distractors)."""
    rows = conn.execute(
        "SELECT regexp_replace(c.uri, '^.*/([a-z]+)\\.[a-z]+$', '\\1'),"
        " pgvision._hash_distance(o.phash, o.phash_crops, c.phash, c.phash_crops),"
        " (eo.embedding OPERATOR(public.<=>) ec.embedding)::float8"
        " FROM pgvision.images o JOIN pgvision.images c ON c.label = o.label AND c.image_id <> o.image_id"
        " JOIN pgvision.image_embeddings eo ON eo.image_id = o.image_id"
        " JOIN pgvision.image_embeddings ec ON ec.image_id = c.image_id"
        " WHERE o.uri ~ '/original\\.[a-z]+$'"
    ).fetchall()
    out = {}
    table = []
    for kind in KINDS:
        hs = [h for k, h, _ in rows if k == kind]
        ds = [d for k, _, d in rows if k == kind]
        out[kind] = {"hash": _stats(hs), "distance": _stats(ds)}
        table.append([kind, len(hs), *_stats(hs), *_stats(ds)])
    neg = [(h, d) for a, b, d, h in pairs if label[a] != label[b]]
    hs = [h for h, _ in neg if h is not None]
    ds = [d for _, d in neg]
    out["different photos (nearest candidates)"] = {"hash": _stats(hs), "distance": _stats(ds)}
    table.append(["different photos*", len(neg), *_stats(hs), *_stats(ds)])
    common.print_table(
        [
            "copy",
            "pairs",
            "hash min",
            "hash median",
            "hash p95",
            "hash max",
            "dist min",
            "dist median",
            "dist p95",
            "dist max",
        ],
        table,
        title="copy to its original: hash distance (bits) and cosine distance "
        "(*: candidate pairs of two different photos, the nearest ones)",
    )
    return out


def errors_on_test(conn, label: dict[int, str], keep: set[int]) -> dict:
    """Tier same at the functions' defaults, test half: missed copies by kind, false pairs."""
    rows = conn.execute(
        "SELECT g.image_id, g.group_id, i.uri FROM pgvision.duplicate_groups('same') g "
        "JOIN pgvision.images i USING (image_id)"
    ).fetchall()
    group = {i: g for i, g, _ in rows}
    uris = dict(conn.execute("SELECT image_id, uri FROM pgvision.images").fetchall())
    originals = {label[i]: i for i, u in uris.items() if "/original." in u}
    missed: dict[str, int] = {}
    for i, u in uris.items():
        if i not in keep or "/original." in u or not label[i].startswith("fam"):
            continue
        o = originals[label[i]]
        if group.get(i) is None or group.get(i) != group.get(o):
            kind = u.rsplit("/", 1)[-1].split(".")[0]
            missed[kind] = missed.get(kind, 0) + 1
    false_pairs = []
    by_group: dict[int, list[int]] = {}
    for i, g in group.items():
        if i in keep:
            by_group.setdefault(g, []).append(i)
    for members in by_group.values():
        labels = sorted({label[i] for i in members})
        if len(labels) > 1:
            false_pairs.append(labels)
    print(f"\ntier same, defaults, test half: copies not grouped with their original, by kind: {missed}")
    print(f"groups mixing different photos (labels): {false_pairs}")
    return {"missed_by_kind": missed, "mixed_groups": false_pairs}


# ---------------------------------------------------------------- scale


def synthetic(n: int, dims: int, seed: int = 0):
    """Vectors, 64-bit hashes, crop hashes and family ids (-1 = no family) of n images."""
    rng = np.random.default_rng(seed)
    base_n = int(n * 0.93)
    vecs = common.clustered(base_n, dims, clusters=max(10, n // 1000), seed=seed, spread=0.3)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    hashes = rng.integers(0, 2, size=(base_n, 64), dtype=np.uint8)
    crops = rng.integers(0, 2, size=(base_n, 576), dtype=np.uint8)
    family = np.full(base_n, -1)
    extra_v, extra_h, extra_c, extra_f = [], [], [], []
    fam_id = 0
    i = 0
    while len(extra_v) < n - base_n:
        for _ in range(rng.integers(1, 5)):
            if len(extra_v) >= n - base_n:
                break
            v = vecs[i] + rng.normal(scale=0.15 / np.sqrt(dims), size=dims)  # cosine distance ~0.01
            extra_v.append(v / np.linalg.norm(v))
            h = hashes[i].copy()
            h[rng.choice(64, size=rng.integers(0, 6), replace=False)] ^= 1
            extra_h.append(h)
            extra_c.append(crops[i])
            extra_f.append(fam_id)
        family[i] = fam_id
        fam_id += 1
        i += 7
    vecs = np.vstack([vecs, np.array(extra_v, dtype=np.float32)])
    hashes = np.vstack([hashes, np.array(extra_h)])
    crops = np.vstack([crops, np.array(extra_c)])
    family = np.concatenate([family, np.array(extra_f)])
    return vecs.astype(np.float32), hashes, crops, family


def scale(args) -> dict:
    from pgvision.index.ddl import ensure_index
    from pgvision.ingest.pg_copy import ImageRecord, copy_image_embeddings
    from pgvision.registry import ModelSpec, register_model

    n = args.scale
    vecs, hashes, crops, family = synthetic(n, args.dims, args.seed)
    with common.bench_database("duplicates_scale", args.data_dir) as url:
        conn = common.connect(url)
        info = common.machine(conn)
        common.print_machine(info)
        model_id = register_model(conn, ModelSpec("synthetic", "image", args.dims, "cosine", normalized=True))
        t = time.perf_counter()
        for s in range(0, n, 5000):
            records = [
                ImageRecord(
                    hashlib.sha256(b"%d" % i).digest(),
                    f"file:///synthetic/{i}.jpg",
                    None,
                    100,
                    100,
                    {},
                    "".join(map(str, hashes[i])),
                    "".join(map(str, crops[i])),
                )
                for i in range(s, min(n, s + 5000))
            ]
            copy_image_embeddings(conn, model_id, records, vecs[s : s + len(records)], dims=args.dims)
        load_s = time.perf_counter() - t
        conn.execute("ANALYZE pgvision.images")
        conn.execute("ANALYZE pgvision.image_embeddings")
        t = time.perf_counter()
        ensure_index(conn, model_id)
        index_s = time.perf_counter() - t
        print(f"{n} images stored in {load_s:.0f} s, HNSW index built in {index_s:.0f} s")
        ids = np.array([r[0] for r in conn.execute("SELECT image_id FROM pgvision.images ORDER BY image_id")])
        fam = dict(zip(ids.tolist(), family.tolist(), strict=True))
        label = {i: (f"fam{f:07d}" if f >= 0 else f"other{i}") for i, f in fam.items()}
        rows = []
        for tier in ("same", "similar"):
            cpu: list = []
            groups, seconds = sql_groups(conn, tier, cpu=cpu)
            p, r, pred, truth = score(groups, label, set(label))
            cpu_text = "" if cpu[0] is None else f"{cpu[0]:.1f}"
            rows.append([tier, n, f"{seconds:.1f}", cpu_text, len(set(groups.values())), f"{p:.4f}", f"{r:.4f}"])
        common.print_table(
            ["tier", "images", "seconds (wall)", "backend CPU seconds", "groups", "pair precision", "pair recall"],
            rows,
            title=f"duplicate_groups on {n} synthetic images ({args.dims}-d, HNSW m 16 ef_construction 64)",
        )
        results = {
            "machine": info,
            "n": n,
            "dims": args.dims,
            "load_seconds": load_s,
            "index_seconds": index_s,
            "rows": rows,
        }
        common.write_results("duplicates_scale", results)
        return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calibrate", action="store_true", help="the labelled set: choose limits, report P/R (default)")
    ap.add_argument("--scale", type=int, metavar="N", help="time duplicate_groups on N synthetic images")
    ap.add_argument("--dims", type=int, default=512, help="--scale: embedding dimensions (default 512)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--people", type=int, default=None, help="--calibrate: only the first N LFW people (default all 40)"
    )
    ap.add_argument(
        "--imagenet", type=int, default=None, help="--calibrate: only the first N ImageNet samples (default all 100)"
    )
    common.add_server_args(ap)
    args = ap.parse_args()
    if args.scale:
        scale(args)
    if args.calibrate or not args.scale:
        calibrate(args)


if __name__ == "__main__":
    main()
