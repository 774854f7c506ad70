"""HNSW build with one fixed setting for every machine against the settings sized to this machine.

``--rows`` x ``--dims`` clustered vectors are stored once through pgvision's COPY path;
then the model's HNSW index (m 16, ef_construction 64; :func:`pgvision.index.ddl.index_ddl`
without ``CONCURRENTLY``, so that only the build is timed) is dropped and rebuilt, in
interleaved rounds, under:

* ``fixed``: one setting for every machine (maintenance_work_mem 1GB,
  max_parallel_maintenance_workers 2), what an untuned server of that kind gets;
* ``tuned``: :func:`pgvision.server.tuning.settings_for` this machine (``--ram``/``--cores`` to
  size for another one).

Only the two parameters an index build reads per session differ between the rounds;
shared_buffers and the other server-level parameters are the server's own (printed), the
same for both. The estimated graph (:func:`pgvision.index.build_progress.hnsw_graph_bytes`) and
pgvector's NOTICE tell whether it fit ``maintenance_work_mem``.

Example::

    .venv/bin/python bench/bench_tuning.py --rows 100000 --dims 128 --reps 2
"""

from __future__ import annotations

import argparse
import re

import common
from pgvision.index import build_progress, ddl
from pgvision.registry import get_model
from pgvision.server import tuning


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="vectors (default 100,000)")
    ap.add_argument("--dims", type=int, default=128, help="dimension (default 128)")
    ap.add_argument("--ram", type=tuning.parse_size,
                    help="size the tuned settings for this RAM (default: this machine's)")
    ap.add_argument("--cores", type=int, help="and these cores (default: this machine's)")
    common.add_server_args(ap)
    a = ap.parse_args()
    here = tuning.this_machine()
    machine = tuning.Machine(a.ram or here.ram_bytes, a.cores or here.cores)
    tuned = {s.name: s.value for s in tuning.settings_for(machine)}
    configs = {  # name: (max_parallel_maintenance_workers, maintenance_work_mem)
        "fixed": (2, "1GB"),
        "tuned": (int(tuned["max_parallel_maintenance_workers"]), tuned["maintenance_work_mem"]),
    }
    results = {"benchmark": "tuning", "args": {k: str(v) for k, v in vars(a).items()},
               "tuned_for": machine.describe(), "configs": configs}
    with common.bench_database("tuning", a.data_dir) as url:
        conn = common.connect(url)
        results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        x = common.normalize(common.clustered(a.rows, a.dims, clusters=max(10, a.rows // 100), seed=3))
        name = f"tune-{a.rows}-{a.dims}"
        common.store_image_vectors(conn, name, x)
        model = get_model(conn, name)
        statement = ddl.index_ddl(model, concurrently=False)
        graph_mb = build_progress.hnsw_graph_bytes(a.rows, a.dims, model["hnsw_m"]) / 2**20
        notices: list[str] = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
        fits: dict[str, str] = {}

        def before(cfg: str) -> None:
            ddl.drop_index(conn, model)
            workers, mwm = configs[cfg]
            conn.execute(f"SET max_parallel_maintenance_workers = {workers}")
            conn.execute(f"SET maintenance_work_mem = '{mwm}'")
            conn.execute("CHECKPOINT")
            notices.clear()

        def build(cfg: str):
            def run() -> None:
                conn.execute(statement)
                m = [re.search(r"after ([\d,]+) tuples", s) for s in notices]
                m = [x for x in m if x]
                fits[cfg] = f"no, after {m[0].group(1)} tuples" if m else "yes"
            return run

        times = common.interleaved({c: build(c) for c in configs}, a.reps, before=before)
        size_mb = build_progress.index_mb(conn, ddl.index_name(model))
        conn.close()
    med = {c: common.median(t) for c, t in times.items()}
    rows = [[c, configs[c][0], configs[c][1], med[c], min(times[c]), max(times[c]), med["fixed"] / med[c],
             fits.get(c, "?")] for c in configs]
    common.print_table(["settings", "workers", "maintenance_work_mem", "median s", "min s", "max s",
                        "speed-up vs fixed", "graph fits"], rows,
                       f"HNSW build, {a.rows:,} x {a.dims} "
                       f"(index {size_mb:.0f} MB, estimated graph {graph_mb:.0f} MB), "
                       f"tuned for {machine.describe()}, median of {a.reps}")
    results.update(seconds=times, median_s=med, fits=fits, index_mb=size_mb, graph_mb_estimate=graph_mb)
    common.write_results("tuning", results)


if __name__ == "__main__":
    main()
