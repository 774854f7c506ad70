"""How close can a SQL API function get to raw pgvector SQL? search_images designs side by side.

Issue 13 item 5 asks search_images for >= 0.95x the QPS of the raw query
``SELECT image_id ... ORDER BY embedding <=> q LIMIT 10``. This loads ``--rows`` x 512
clustered vectors, builds the model's HNSW index (ef_search 40) and times, from one client,
round trip included, interleaved call by call (median QPS over ``--reps`` rounds):

* ``raw``: the query itself (prepared by psycopg after 5 runs), ids only;
* ``raw + images``: the same joined to ``images`` for the uri and label search_images returns;
* ``search_images v4``: the API (0009): design C below, generated into search_images by
  the models trigger, plus the order of ties by image_id;
* ``search_images v3``: the previous API (0007, installed beside it as
  ``designs.search_images_v3``): ``_resolve_model``, ``_check_query``, then ``_ann``'s
  plan-cached statement under the model's ef_search, join, order by (distance, id);
* ``B``: v3 with the model lookup and the checks inlined (still two plpgsql layers);
* ``C``: one plpgsql layer holding the per-model static statement with the join, the
  model's ef_search and enable_sort set and restored, ``plan_cache_mode =
  force_generic_plan`` (a ``LIMIT k`` otherwise makes PostgreSQL re-plan every call);
* ``D``: C without setting ef_search / enable_sort (ef_search from the session: not a
  correct API, it ignores the model's chosen ef_search; shows what the settings cost);
* ``E1``: a bare plpgsql ``RETURN QUERY <join> LIMIT k`` (custom plan, re-planned per call);
  ``E2``: the same with ``SET search_path`` (issue 8's rule for every function);
* ``E3``: the same statement as an inlinable ``LANGUAGE sql`` function (no SET clause, no
  settings): PostgreSQL inlines it into the caller's query, so it costs what the raw query
  costs; it cannot apply a model's ef_search, and without ``SET search_path`` it breaks
  issue 8's rule.

B to E3 are hand-written for the one model here (schema ``designs``): measurements of
designs, not pgvision's API. Each variant's ids are checked against raw's before timing.

Example::

    PYTHONPATH=loader .venv/bin/python bench/search_designs.py --rows 100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import common
from bench_scale import install_variant
from bench_search import load
from pgvision import indexes
from pgvision.migrate import vector_schema

DIMS = 512


def create_designs(conn, model_id: int) -> None:
    vs = vector_schema(conn.cursor())
    key, q, op = f"e.embedding::{vs}.vector({DIMS})", f"query::{vs}.vector({DIMS})", f"OPERATOR({vs}.<=>)"
    args = f"query {vs}.vector, k integer DEFAULT 10, model text DEFAULT NULL, ef_search integer DEFAULT NULL"
    head = f"""
DECLARE m pgvision.models; old_ef text; want text; old_sort text; sq float8;
BEGIN
  SELECT * INTO m FROM pgvision.models x WHERE x.name = model AND x.kind = 'image';
  IF m.model_id IS NULL THEN m := pgvision._resolve_model(model, 'image'); END IF;
  sq := -(query OPERATOR({vs}.<#>) query);
  IF k IS NULL OR k < 1 OR k > 1000 OR ef_search < 1 OR ef_search > 1000 OR query IS NULL
     OR {vs}.vector_dims(query) <> m.dims OR NOT (sq < 'Infinity'::float8) OR (m.metric = 'cosine' AND sq = 0) THEN
    PERFORM pgvision._check_query(query, m, k, ef_search);
  END IF;"""
    join = (f"SELECT e.image_id, i.uri, i.label, ({key} {op} {q})::float8 AS d FROM pgvision.image_embeddings e "
            f"JOIN pgvision.images i ON i.image_id = e.image_id WHERE e.model_id = {model_id} ORDER BY {key} {op} {q} LIMIT k")
    settings_on = """
  old_ef := current_setting('hnsw.ef_search', true); want := greatest(coalesce(ef_search, m.ef_search), k)::text;
  IF want IS DISTINCT FROM old_ef THEN PERFORM set_config('hnsw.ef_search', want, true); END IF;
  old_sort := current_setting('enable_sort');
  IF old_sort <> 'off' THEN PERFORM set_config('enable_sort', 'off', true); END IF;"""
    settings_off = """
  IF old_sort <> 'off' THEN PERFORM set_config('enable_sort', old_sort, true); END IF;
  IF want IS DISTINCT FROM old_ef THEN PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true); END IF;"""
    secure = "SET search_path = pg_catalog, pgvision, pg_temp"
    generic = "SET plan_cache_mode = force_generic_plan"
    out = "RETURNS SETOF pgvision.image_hit"
    conn.execute("CREATE SCHEMA designs")
    conn.execute(f"""CREATE FUNCTION designs.b({args}) {out} LANGUAGE plpgsql VOLATILE {secure} AS $f$ {head}
  RETURN QUERY SELECT n.item_id, i.uri, i.label, n.distance, pgvision._similarity(n.distance, m.metric)
      FROM pgvision._ann(m, query, k, ef_search) n JOIN pgvision.images i ON i.image_id = n.item_id
      ORDER BY n.distance, n.item_id;
END $f$""")
    conn.execute(f"""CREATE FUNCTION designs.c({args}) {out} LANGUAGE plpgsql VOLATILE {secure} {generic} AS $f$ {head}
  {settings_on}
  RETURN QUERY SELECT s.image_id, s.uri, s.label, s.d, 1 - s.d FROM ({join}) s;
  {settings_off}
END $f$""")
    conn.execute(f"""CREATE FUNCTION designs.d({args}) {out} LANGUAGE plpgsql VOLATILE {secure} {generic} AS $f$ {head}
  RETURN QUERY SELECT s.image_id, s.uri, s.label, s.d, 1 - s.d FROM ({join}) s;
END $f$""")
    bare = f"SELECT s.image_id, s.uri, s.label, s.d, 1 - s.d FROM ({join}) s"
    conn.execute(f"CREATE FUNCTION designs.e1({args}) {out} LANGUAGE plpgsql VOLATILE AS $f$ BEGIN RETURN QUERY {bare}; END $f$")
    conn.execute(f"CREATE FUNCTION designs.e2({args}) {out} LANGUAGE plpgsql VOLATILE {secure} AS $f$ BEGIN RETURN QUERY {bare}; END $f$")
    conn.execute(f"CREATE FUNCTION designs.e3({args}) {out} LANGUAGE sql STABLE AS $f$ {bare} $f$")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="vectors (default 100,000)")
    ap.add_argument("--queries", type=int, default=200, help="held-out queries per round (default 200)")
    common.add_server_args(ap)
    a = ap.parse_args()
    results = {"benchmark": "search_designs", "args": {k: str(v) for k, v in vars(a).items()}}
    with common.bench_database("designs", a.data_dir) as url:
        conn = common.connect(url)
        results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        x = common.normalize(common.clustered(a.rows + a.queries, DIMS, 1000, seed=a.rows))
        x, queries = x[:a.rows], x[a.rows:]
        model_id, _ = load(conn, "designs", x)
        indexes.set_index(conn, "designs", method="hnsw")
        ef = conn.execute("SELECT ef_search FROM pgvision.models WHERE model_id = %s", (model_id,)).fetchone()[0]
        create_designs(conn, model_id)
        install_variant(conn, "designs", "search_images", "functions/search_images.v3.sql",
                        {"pgvision.search_images(": "designs.search_images_v3(",
                         "search_images.label": "search_images_v3.label"})
        raw = (f"SELECT image_id FROM pgvision.image_embeddings WHERE model_id = {model_id} "
               f"ORDER BY embedding::vector({DIMS}) <=> %s::vector({DIMS}) LIMIT 10")
        raw_conn = common.connect(url)
        raw_conn.execute(f"SET hnsw.ef_search = {int(ef)}")
        conn.execute(f"SET hnsw.ef_search = {int(ef)}")  # for D, E1-E3 (they do not set it)
        api = "SELECT image_id FROM {}(%s, 10, 'designs')"
        variants = {
            "raw (ids)": (raw_conn, raw),
            "raw + images": (raw_conn, f"SELECT c.image_id, i.uri, i.label FROM ({raw}) c "
                                       "JOIN pgvision.images i ON i.image_id = c.image_id"),
            "search_images v4 (the API)": (conn, api.format("pgvision.search_images")),
            "search_images v3 (0007)": (conn, api.format("designs.search_images_v3")),
            "B: v3, lookup + checks inlined": (conn, api.format("designs.b")),
            "C: one layer, generic plan": (conn, api.format("designs.c")),
            "D: C without the settings": (conn, api.format("designs.d")),
            "E1: plpgsql RETURN QUERY": (conn, api.format("designs.e1")),
            "E2: E1 + SET search_path": (conn, api.format("designs.e2")),
            "E3: inlinable LANGUAGE sql": (conn, api.format("designs.e3")),
        }
        want = [r[0] for r in raw_conn.execute(raw, (queries[0],))]
        for name, (c, sql) in variants.items():
            for q in queries[:20]:  # warm: plans cached, functions compiled
                c.execute(sql, (q,)).fetchall()
            got = [r[0] for r in c.execute(sql, (queries[0],))]
            assert sorted(got) == sorted(want), (name, got, want)
        # Interleaved call by call (each query runs every variant, in an order that rotates),
        # so the VM's drift between blocks of calls falls on every variant alike.
        names = list(variants)
        qps: dict[str, list[float]] = {k: [] for k in variants}
        for rep in range(a.reps):
            spent = dict.fromkeys(names, 0.0)
            for j, q in enumerate(queries):
                shift = (rep * len(queries) + j) % len(names)
                for name in names[shift:] + names[:shift]:
                    c, sql = variants[name]
                    t = time.perf_counter()
                    c.execute(sql, (q,)).fetchall()
                    spent[name] += time.perf_counter() - t
            for name in names:
                qps[name].append(len(queries) / spent[name])
        conn.close()
        raw_conn.close()
    med = {k: float(np.median(v)) for k, v in qps.items()}
    rows = [[k, med[k], med[k] / med["raw (ids)"], med[k] / med["raw + images"],
             ", ".join(f"{v:.0f}" for v in qps[k])] for k in variants]
    common.print_table(["variant", "median QPS", "/ raw", "/ raw + images", "QPS by round"], rows,
                       f"{a.rows:,} x {DIMS}, HNSW ef_search {ef}, {a.queries} queries x {a.reps} rounds, interleaved call by call")
    results.update(qps=qps, median_qps=med)
    common.write_results("search_designs", results)


if __name__ == "__main__":
    main()
