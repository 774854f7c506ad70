"""Shared by the benchmarks: the server, the machine's description, timing, tables, results.

Every benchmark runs against a *fresh database* on either ``$DATABASE_URL``'s server or an
embedded server in its own data directory (``/tmp/pgvision-bench/pg`` by default, never the
user's default one), migrated to head; the database is dropped and the embedded server
stopped at the end.

Timing rule (the machines are shared and noisy): methods compared with each other are run
in interleaved rounds (A B C, B C A, C A B, ...) and reported as medians of at least 5
repetitions; ratios are computed from medians measured in the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
IMG = REPO / "docs" / "img"
DEFAULT_DATA_DIR = Path("/tmp/pgvision-bench/pg")

sys.path.insert(0, str(REPO / "loader"))  # a fresh clone without `pip install -e .`

#: Settings the benchmarks print with every result (the server's, not pgvision's choice).
SHOWN_SETTINGS = ("shared_buffers", "maintenance_work_mem", "max_parallel_maintenance_workers",
                  "max_parallel_workers", "work_mem", "effective_cache_size", "jit", "synchronous_commit")


def add_server_args(ap) -> None:
    """``--data-dir`` and ``--reps`` options every benchmark takes."""
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                    help=f"embedded server data directory when DATABASE_URL is unset (default {DEFAULT_DATA_DIR})")
    ap.add_argument("--reps", type=int, default=5, help="repetitions per method, median reported (>= 5, default 5)")


@contextlib.contextmanager
def bench_database(name: str, data_dir: Path = DEFAULT_DATA_DIR, migrate_schema: bool = True) -> Iterator[str]:
    """Yield the URL of a fresh database ``pgvision_bench_<name>`` migrated to head.

    ``$DATABASE_URL`` names the server when set (its database is used only to connect;
    the benchmark creates and drops its own); otherwise an embedded server is started in
    ``data_dir`` and stopped afterwards.
    """
    from pgvision import migrate
    from pgvision.server import embedded

    started = False
    base = os.environ.get("DATABASE_URL")
    if not base:
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir.parent, 0o755)  # as root the server runs as another user
        base = embedded.start(data_dir)
        started = True
    db = f"pgvision_bench_{name}"
    admin = make_conninfo(base, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    url = make_conninfo(base, dbname=db)
    try:
        if migrate_schema:
            import logging

            logging.disable(logging.INFO)  # alembic's per-revision lines
            migrate.upgrade(url)
            logging.disable(logging.NOTSET)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        if started:
            embedded.stop(data_dir)


def connect(url: str, autocommit: bool = True) -> psycopg.Connection:
    """psycopg connection with pgvector's types registered."""
    from pgvector.psycopg import register_vector

    conn = psycopg.connect(url, autocommit=autocommit)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    return conn


def machine(conn: psycopg.Connection | None = None) -> dict:
    """CPU model, cores, RAM, load, Python/numpy, and PostgreSQL/pgvector versions and settings."""
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "psycopg": psycopg.__version__,
    }
    if conn is not None:
        info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
        row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        info["pgvector"] = row[0] if row else None
        info["settings"] = {s: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(s))).fetchone()[0]
                            for s in SHOWN_SETTINGS}
        host = conninfo_to_dict(conn.info.dsn).get("host", "")
        info["connection"] = "unix socket" if str(host).startswith("/") else f"tcp {host}"
    return info


def print_machine(info: dict) -> None:
    s = info.get("settings", {})
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, load {info['load_avg_1m']}; "
          f"Python {info['python']}, numpy {info['numpy']}")
    if "postgresql" in info:
        print(f"server: PostgreSQL {info['postgresql']}, pgvector {info['pgvector']} over {info['connection']}; "
              + ", ".join(f"{k}={v}" for k, v in s.items()))
    print()


def interleaved(methods: dict[str, Callable[[], object]], reps: int,
                before: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Time each method ``reps`` times, in rotating order, and return seconds per run.

    Args:
        methods: name -> zero-argument function (one timed run).
        reps: repetitions of each method.
        before: called with the method name before each timed run (untimed: reset a table).
    """
    names = list(methods)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            if before is not None:
                before(n)
            t = time.perf_counter()
            methods[n]()
            times[n].append(time.perf_counter() - t)
    return times


def median(xs) -> float:
    return float(statistics.median(xs))


def percentile(xs, p: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=float), p))


def fmt(x, digits: int = 3) -> str:
    """Numbers for tables: thousands separators, ``digits`` significant digits for small ones."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def print_table(headers: list[str], rows: list[list], title: str | None = None) -> str:
    """Print (and return) a Markdown table."""
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    text = "\n".join(lines)
    if title:
        print(f"\n{title}")
    print(text)
    return text


def write_results(name: str, results: dict) -> Path:
    """Write ``bench/out/<name>.json`` (gitignored) and return its path."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(results, indent=2, default=float))
    print(f"\nresults: {path}")
    return path


def save_plot(fig, name: str) -> Path:
    """Save a matplotlib figure as ``docs/img/<name>.png``."""
    IMG.mkdir(parents=True, exist_ok=True)
    path = IMG / f"{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    print(f"plot: {path}")
    return path


def clustered(n: int, dims: int, clusters: int, seed: int = 0, spread: float = 0.15,
              chunk: int = 100_000) -> np.ndarray:
    """``n`` float32 vectors around ``clusters`` random unit centres (Gaussian spread).

    The same generator as tests/sqlhelpers.py's ``clustered()``, built in chunks so that
    1M x 512 does not need a float64 copy of the whole set.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dims), dtype=np.float32)
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        noise = rng.normal(scale=spread, size=(m, dims)) / np.sqrt(dims) * 4
        out[i:i + m] = centres[rng.integers(0, clusters, m)] + noise
    return out


def normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


# --- shared by several benchmarks (no benchmark imports another) -------------------------


def store_image_vectors(conn, name: str, x: np.ndarray, labels=None, batch: int = 5000) -> tuple[int, np.ndarray]:
    """Store ``x`` (N, D) float32 under a new cosine image model ``name`` through pgvision's
    COPY path (:func:`pgvision.ingest.pg_copy.copy_image_embeddings`), then ``VACUUM ANALYZE``.

    Returns:
        (model_id, image_id of each row of ``x``).
    """
    from pgvision.ingest import pg_copy
    from pgvision.registry import ModelSpec, register_model

    model_id = register_model(conn, ModelSpec(name, "image", x.shape[1], "cosine", normalized=True))
    recs = [pg_copy.ImageRecord(hashlib.sha256(f"{name}-{i}".encode()).digest(), f"bench:{name}/{i}",
                                None if labels is None else str(labels[i])) for i in range(len(x))]
    for i in range(0, len(x), batch):
        pg_copy.copy_image_embeddings(conn, model_id, recs[i:i + batch], x[i:i + batch])
    rows = conn.execute("SELECT image_id, uri FROM pgvision.images WHERE uri LIKE %s", (f"bench:{name}/%",)).fetchall()
    ids = np.zeros(len(x), dtype=np.int64)
    for image_id, uri in rows:
        ids[int(uri.rsplit("/", 1)[1])] = image_id
    conn.execute("VACUUM ANALYZE pgvision.image_embeddings")
    conn.execute("VACUUM ANALYZE pgvision.images")
    return model_id, ids


def encode_bare(ids: np.ndarray, emb: np.ndarray) -> bytes:
    """Binary COPY payload of (id bigint, embedding vector) rows, built by numpy in one pass."""
    from pgvision.ingest import pg_copy

    n, d = emb.shape
    row = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("id", ">i8"), ("l2", ">i4"), ("dims", ">i2"),
                    ("unused", ">i2"), ("v", ">f4", (d,))])
    r = np.empty(n, dtype=row)
    r["nf"], r["l1"], r["id"], r["l2"], r["dims"], r["unused"], r["v"] = 2, 8, ids, 4 + 4 * d, d, 0, emb
    return pg_copy._HEADER + r.tobytes() + pg_copy._TRAILER


def install_variant(conn, schema: str, name: str, sql_path: str, rename: dict[str, str]) -> None:
    """A released SQL API file installed under another name, for side-by-side timing in one run.

    ``rename`` maps text of the file to its replacement (the function's qualified name, a
    constant); pgvector's schema token is replaced as ``migrate.apply_sql`` does.
    """
    from pgvision.migrate import SECURE_SEARCH_PATH, sql_file, vector_schema

    text = sql_file(sql_path).replace("@extschema:vector@", vector_schema(conn.cursor()))
    for old, new in rename.items():
        if old not in text:
            raise ValueError(f"{sql_path} has no {old!r} to rename")
        text = text.replace(old, new)
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    conn.execute("SELECT set_config('search_path', %s, false)", (SECURE_SEARCH_PATH,))
    conn.execute(text)
    conn.execute("RESET search_path")


class BruteForce:
    """Every gallery vector compared in numpy with identify's rule (the exact answer).

    Identity distance = min(nearest gallery face, distance to the identity's mean
    embedding), as ``sql/functions/_identify.v5.sql``; ``x`` (N, D) float32, ``who`` (N,)
    identity index of each row, ``metric`` "l2" or "cosine".
    """

    def __init__(self, x: np.ndarray, who: np.ndarray, metric: str) -> None:
        self.x, self.who, self.metric = x, who, metric
        n_ids = int(who.max()) + 1
        sums = np.zeros((n_ids, x.shape[1]), dtype=np.float64)
        np.add.at(sums, who, x)
        self.templates = (sums / np.bincount(who, minlength=n_ids)[:, None]).astype(np.float32)

    def dist(self, m: np.ndarray, q: np.ndarray) -> np.ndarray:
        if self.metric == "l2":
            return np.linalg.norm(m - q, axis=1)
        return 1.0 - (m @ q) / np.linalg.norm(m, axis=1)

    def identify(self, q: np.ndarray, candidates: int = 5) -> list[tuple[int, float]]:
        """(identity index, identity distance) of the ``candidates`` best identities, best first."""
        d = self.dist(self.x, q)
        nearest = np.full(self.templates.shape[0], np.inf, dtype=np.float32)
        np.minimum.at(nearest, self.who, d)
        best = np.minimum(nearest, self.dist(self.templates, q))
        top = np.argpartition(best, candidates)[:candidates]
        top = top[np.argsort(best[top])]
        return [(int(i), float(best[i])) for i in top]


def true_recall(truth_ids: np.ndarray, truth_d: np.ndarray, got: list[np.ndarray], got_d: list[np.ndarray]) -> float:
    """recall@k counted by true ids, as pgvision counts it (``recall_target.hits``).

    A returned row is a hit when it is one of the query's exact top-k rows, or when its
    exact distance ties the k-th exact distance up to float rounding (relative 1e-9); a
    near miss is not a hit (no ann-benchmarks 1e-3 epsilon).

    Args:
        truth_ids: (Q, k) row indices of the exact top-k.
        truth_d: (Q, k) their exact distances, ascending.
        got: per query, the row indices returned.
        got_d: per query, the exact distances of the rows returned.
    """
    k = truth_ids.shape[1]
    hits = 0
    for ids, td, rows, d in zip(truth_ids, truth_d, got, got_d, strict=True):
        kth = float(td[k - 1])
        ids = set(int(i) for i in ids)
        hits += sum(int(r) in ids or float(x) <= kth + 1e-9 * abs(kth) for r, x in zip(rows, d, strict=True))
    return hits / (k * len(truth_ids))


def round_ratios(times: dict[str, list[float]], a: str, b: str) -> list[float]:
    """Speed of ``a`` over ``b`` (time of b / time of a) in each interleaved round."""
    return [tb / ta for ta, tb in zip(times[a], times[b], strict=True)]


def verdict(ratios: list[float], goal: float) -> str:
    """"met" when every interleaved round reaches ``goal``, "missed" when none does, else
    "not shown" (the spread of the rounds straddles the goal)."""
    if min(ratios) >= goal:
        return "met"
    if max(ratios) < goal:
        return "missed"
    return "not shown"


def spread(ratios: list[float]) -> str:
    """``median (min-max)`` of per-round ratios, for tables."""
    return f"{median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})"


#: dlib's num_jitters for ``face_descriptors(..., augment="jitter")``.
JITTERS = 10


def _augmented(model, chips: np.ndarray, augment: str) -> np.ndarray:
    """(N, 128) float32 dlib descriptors of (N, 150, 150, 3) uint8 chips, with ``augment``."""
    if augment == "none":
        return model.embed(chips)
    if augment == "flip":
        return (model.embed(chips) + model.embed(np.ascontiguousarray(chips[:, :, ::-1]))) / 2
    out = model._net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips], JITTERS)
    return np.asarray([np.asarray(v) for v in out], dtype=np.float32)


def face_descriptors(root: Path, augment: str = "none") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dlib descriptors of every photo under ``root/<identity>/``, as ``pgvision faces load``
    finds them (HOG detector, the photo's largest face, 5-point alignment).

    ``augment``: ``none`` (pgvision's single pass), ``flip`` (mean with the mirrored chip) or
    ``jitter`` (dlib's ``num_jitters=10``). Cached in ``bench/out/`` by folder and augment
    (embedding 800 photos takes minutes on 2 cores).

    Returns:
        (identity name of each photo (P,), descriptors (P, 128) float32 (zeros where no
        face), has_face (P,) bool), photos in sorted folder and file order.
    """
    cache = OUT / f"faces_{Path(root).resolve().name}_{augment}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["names"], z["emb"], z["has"]
    from pgvision.faces.detect import FaceDetector
    from pgvision.faces.embed import load_face_model
    from pgvision.faces.pipeline import FacePipeline, read_photo
    from pgvision.ingest.images import find_images

    pipe = FacePipeline(load_face_model("dlib", None, "cpu"), FaceDetector("hog", 1, 40, "detect"))
    names, embs, has = [], [], []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        for path in find_images([folder]):
            faces, chips, _ = pipe.scan(read_photo(path).pixels)
            e = _augmented(pipe.model, chips[:1], augment) if len(faces) else None
            names.append(folder.name)
            has.append(bool(len(faces)))
            embs.append(e[0] if len(faces) else np.zeros(pipe.model.dims, np.float32))
    out = np.array(names), np.stack(embs).astype(np.float32), np.array(has)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(cache, names=out[0], emb=out[1], has=out[2])
    return out


def empty_answers(conn, api: str, name: str, x: np.ndarray, queries: np.ndarray, ef: int, reps: int,
                  k: int = 10) -> dict:
    """p50 / p99 ms of search_images with a max_distance that no hit reaches, beside the same search without it.

    Args:
        api: the full search, ``search_images(q, k, model, ef_search => ef)``'s statement with
            three parameters; x: the stored unit vectors (n, d) float32; queries: (q, d) float32;
            reps: interleaved rounds (order reversed every other round).

    Returns:
        {"full answer": {p50_ms, p99_ms}, "empty answer (max_distance)": {...}, "max_distance"}.
    """
    cut = min(1.0 - float(np.max(x @ q)) for q in queries) / 2
    empty_sql = "SELECT image_id FROM pgvision.search_images(%s, 10, %s, ef_search => %s, max_distance => %s)"
    runs = {
        "full answer": (api, lambda q: (q, name, ef), k),
        "empty answer (max_distance)": (empty_sql, lambda q: (q, name, ef, cut), 0),
    }
    lat: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(reps):
        for key in list(runs) if r % 2 == 0 else list(runs)[::-1]:
            statement, args, rows = runs[key]
            for q in queries:
                t = time.perf_counter()
                got = conn.execute(statement, args(q)).fetchall()
                lat[key].append((time.perf_counter() - t) * 1000)
                assert len(got) == rows, (key, len(got))
    out = {k: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)} for k, v in lat.items()}
    print_table(
        [f"search_images at ef_search {ef}", "p50 ms", "p99 ms"],
        [[k, v["p50_ms"], v["p99_ms"]] for k, v in out.items()],
        title=f"empty answers (max_distance {cut:.4f}, below every query's nearest distance)",
    )
    out["max_distance"] = cut
    return out
