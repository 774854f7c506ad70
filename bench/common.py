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
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths)) + " |" for r in cells]
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
        out[i:i + m] = centres[rng.integers(0, clusters, m)] + rng.normal(scale=spread, size=(m, dims)) / np.sqrt(dims) * 4
    return out


def normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
