"""Where ``search_images()``'s time goes: server-side milliseconds per call, layer by layer.

Client round trips are noisy on a shared box, so each variant runs ``--calls`` times inside
one ``DO`` block on the server (plpgsql loop, ``clock_timestamp()``), in interleaved rounds,
median of ``--reps``:

* ``raw``: the index query as static SQL (plan cached by plpgsql);
* ``raw, dynamic``: the same text through ``EXECUTE`` (parsed and planned on every call, as
  ``_nearest`` must: the table, the ``vector(D)`` cast and the operator depend on the model);
* ``_nearest query, dynamic``: ``_nearest``'s own query text (two ``array_agg``), via EXECUTE;
* ``_nearest()``: the internal function (settings saved / set / restored, the query, unnest);
* ``search_images()``: the public function (model lookup, argument checks, ``_ann`` since
  0007, join to ``images`` for uri and label, similarity), and its v2 (0006, ``_nearest``);
* ``_ann()``: the generated per-model function (0007) with the static, plan-cached query;
* ``per-model SQL function``: a candidate design (not the API): the literal index query in a
  generated ``LANGUAGE sql`` function, whose plan PostgreSQL 18 caches, called statically or
  through ``EXECUTE`` (as a dispatcher over models would have to).

Example::

    .venv/bin/python bench/experiments/profile_search.py --rows 20000 --dims 512
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
import common  # noqa: E402
from pgvision.index import ddl  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="vectors (default 20,000)")
    ap.add_argument("--dims", type=int, default=512, help="dimension (default 512)")
    ap.add_argument("--calls", type=int, default=300, help="calls per timed DO block (default 300)")
    ap.add_argument("--ef", type=int, default=40, help="hnsw.ef_search (default 40, the model default)")
    common.add_server_args(ap)
    a = ap.parse_args()
    results = {"benchmark": "profile_search", "args": {k: str(v) for k, v in vars(a).items()}}
    with common.bench_database("profile", a.data_dir) as url:
        conn = common.connect(url)
        results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        x = common.normalize(common.clustered(a.rows + 1, a.dims, clusters=max(10, a.rows // 100), seed=7))
        name = "profile"
        mid, _ = common.store_image_vectors(conn, name, x[:-1])
        ddl.set_index(conn, name, method="hnsw")
        conn.execute("CREATE TABLE probe AS SELECT %s::vector AS q", (x[-1],))
        d, ef = a.dims, a.ef
        q_static = (f"SELECT array_agg(image_id) FROM (SELECT image_id FROM pgvision.image_embeddings "
                    f"WHERE model_id = {mid} ORDER BY embedding::vector({d}) <=> v::vector({d}) LIMIT 10) s")
        q_dyn = q_static.replace("v::vector", "$1::vector")
        q_near = (f"SELECT array_agg(item_id ORDER BY distance), array_agg(distance ORDER BY distance) FROM ("
                  f" SELECT e.image_id AS item_id, (e.embedding::vector({d}) <=> $1::vector({d}))::float8 AS distance"
                  f" FROM pgvision.image_embeddings e WHERE e.model_id = {mid}"
                  f" ORDER BY e.embedding::vector({d}) <=> $1::vector({d}) LIMIT $2) s")
        # A candidate design, not pgvision's API: a per-model SQL function holding the literal
        # index query (its plan is cached, PostgreSQL 18), called statically or through EXECUTE.
        conn.execute(
            f"CREATE FUNCTION pgvision._knn_profile(q vector, k int) RETURNS TABLE (item_id bigint, distance float8) "
            f"LANGUAGE sql STABLE AS $f$ SELECT e.image_id, (e.embedding::vector({d}) <=> q::vector({d}))::float8 "
            f"FROM pgvision.image_embeddings e WHERE e.model_id = {mid} "
            f"ORDER BY e.embedding::vector({d}) <=> q::vector({d}) LIMIT k $f$")
        variants = {
            "raw (static SQL, cached plan)": f"PERFORM ({q_static})",
            "per-model SQL function, static call":
                "PERFORM (SELECT array_agg(item_id) FROM pgvision._knn_profile(v, 10))",
            "per-model SQL function, via EXECUTE":
                "EXECUTE 'SELECT array_agg(item_id) FROM pgvision._knn_profile($1, 10)' INTO ids USING v",
            "raw, dynamic (EXECUTE)": f"EXECUTE '{q_dyn}' INTO ids USING v",
            "_nearest query, dynamic": f"EXECUTE '{q_near}' INTO ids, dists USING v, 10",
            "_nearest()": "PERFORM (SELECT array_agg(item_id) FROM pgvision._nearest(mm, v, 10))",
            "_ann() (generated per model, 0007)": "PERFORM (SELECT array_agg(item_id) FROM pgvision._ann(mm, v, 10))",
            "search_images() v2 (0006)":
                f"PERFORM (SELECT array_agg(image_id) FROM bench_prev.search_images_v2(v, 10, model => '{name}'))",
            "_resolve_model() alone": f"PERFORM pgvision._resolve_model('{name}', 'image')",
            "_check_query() alone": "PERFORM pgvision._check_query(v, mm, 10, NULL)",
            "search_images()":
                f"PERFORM (SELECT array_agg(image_id) FROM pgvision.search_images(v, 10, model => '{name}'))",
        }
        common.install_variant(conn, "bench_prev", "search_images", "functions/search_images.v2.sql",
                        {"pgvision.search_images(": "bench_prev.search_images_v2(",
                         "search_images.label": "search_images_v2.label"})
        got: list[float] = []
        conn.add_notice_handler(lambda diag: got.append(float(diag.message_primary)))
        conn.execute(f"SET hnsw.ef_search = {ef}")

        def block(body: str):
            def run() -> None:
                conn.execute(f"""DO $$ DECLARE v vector := (SELECT q FROM probe);
                    mm pgvision.models := (SELECT m FROM pgvision.models m WHERE name = '{name}');
                    t timestamptz; ids bigint[]; dists float8[];
                    BEGIN
                      FOR i IN 1..20 LOOP {body}; END LOOP;
                      t := clock_timestamp();
                      FOR i IN 1..{a.calls} LOOP {body}; END LOOP;
                      RAISE NOTICE '%', extract(epoch FROM clock_timestamp() - t) * 1000 / {a.calls};
                    END $$""")
            return run

        per: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(a.reps):
            order = list(variants)[r % len(variants):] + list(variants)[: r % len(variants)]
            for k in order:
                got.clear()
                block(variants[k])()
                per[k].append(got[-1])
        conn.close()
    med = {k: common.median(v) for k, v in per.items()}
    base = med["raw (static SQL, cached plan)"]
    rows = []
    for k in variants:
        rows.append([k, med[k], min(per[k]), max(per[k]), med[k] - base, base / med[k]])
    common.print_table(["variant", "median ms/call", "min", "max", "over raw, ms", "raw / variant (QPS ratio)"], rows,
                       f"server-side cost per call, {a.rows:,} x {a.dims}, HNSW ef_search {ef}, "
                       f"{a.calls} calls x {a.reps} rounds")
    results.update(ms_per_call=per, median_ms=med)
    common.write_results("profile_search", results)


if __name__ == "__main__":
    main()
