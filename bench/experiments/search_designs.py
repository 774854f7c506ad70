"""How close can a SQL API function get to raw pgvector SQL? search_images designs side by side.

Issue 13 item 5 asks search_images for >= 0.95x the QPS of the raw query
``SELECT image_id ... ORDER BY embedding <=> q LIMIT 10``. This loads ``--rows`` x 512
clustered vectors, builds the model's HNSW index (ef_search 40) and times, from one client,
round trip included, all on one connection (one backend process: a second connection
measured the same query up to 15 % faster or slower on this VM, which is larger than the
differences measured here), in blocks of ``--queries`` calls per variant whose order rotates
from round to round; each variant's QPS is divided by raw's in the same round and the
median ratio over ``--reps`` rounds is printed:

* ``raw``: the query itself (prepared by psycopg after 5 runs), ids only;
* ``raw + images``: the same joined to ``images`` for the uri and label search_images returns;
* ``search_images``: the API as installed (design C below since 0009), generated into search_images by
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
  issue 8's rule;
* ``F``: the inlinable design made correct: a ``LANGUAGE sql STABLE`` function with a
  SQL-standard body (``BEGIN ATOMIC``: names are bound when it is created, so the caller's
  search_path cannot reach it, which is what issue 8's ``SET search_path`` is for and which
  keeps it inlinable), the model's static statement as one branch gated by a one-time
  filter (model found, unfiltered, full-precision HNSW, the session's ``hnsw.ef_search``
  already the one the call needs, the query valid), a ``LEFT JOIN`` to images that the
  planner removes when the caller selects only ids, and ``search_images`` (v4) as the
  fallback branch for every other call;
* ``G``: a ``LANGUAGE sql`` function that is *not* inlined (it has ``SET`` clauses), run by
  PostgreSQL 18's SQL-function executor, which keeps its statements' plans in the plan
  cache: ``SET search_path``, ``plan_cache_mode = force_generic_plan``, ``enable_sort =
  off`` and ``hnsw.ef_search`` as the function's own ``SET`` clauses (saved and restored
  by PostgreSQL around the call, so a ``set_config(..., true)`` inside is undone at exit),
  a first statement that looks the model up, checks the arguments (``_check_query`` only
  to raise) and sets the model's ef_search, and a second with the model's static
  statement. The fast path of one model only: no routing between models, no fallback for
  filtered or binary searches (a measurement of the design, not yet an API).

``--unprepared`` sends every call as a new statement (psycopg ``prepare_threshold=None``),
as psql and BI tools that send literal SQL do: PostgreSQL then plans each call, which is
where F loses (its inlined body is planned with the caller's query every time).

B to E3 are hand-written for the one model here (schema ``designs``): measurements of
designs, not pgvision's API. Each variant's ids are checked against raw's before timing.

Examples (the runs in docs/benchmarks.md, "search_images vs raw SQL (item 5)")::

    PYTHONPATH=loader python bench/experiments/search_designs.py --rows 100000 --queries 300 --reps 10
    PYTHONPATH=loader python bench/experiments/search_designs.py --rows 100000 --queries 300 --reps 6 --unprepared
    PYTHONPATH=loader python bench/experiments/search_designs.py --rows 1000000 --queries 200 --reps 5 \\
        --target-recall 0.95
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/common.py
import common  # noqa: E402
from pgvision.index import ddl  # noqa: E402
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
            f"JOIN pgvision.images i ON i.image_id = e.image_id WHERE e.model_id = {model_id} "
            f"ORDER BY {key} {op} {q} LIMIT k")
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
    conn.execute(f"CREATE FUNCTION designs.e1({args}) {out} LANGUAGE plpgsql VOLATILE "
                 f"AS $f$ BEGIN RETURN QUERY {bare}; END $f$")
    conn.execute(f"CREATE FUNCTION designs.e2({args}) {out} LANGUAGE plpgsql VOLATILE {secure} "
                 f"AS $f$ BEGIN RETURN QUERY {bare}; END $f$")
    conn.execute(f"CREATE FUNCTION designs.e3({args}) {out} LANGUAGE sql STABLE AS $f$ {bare} $f$")
    gate = f"""SELECT m.model_id FROM pgvision.models m
        WHERE m.kind = 'image' AND (m.name = f.model OR (f.model IS NULL AND m.is_default))
          AND m.index_method = 'hnsw' AND m.quantization = 'none' AND f.k BETWEEN 1 AND 1000
          AND (f.ef_search IS NULL OR f.ef_search BETWEEN 1 AND 1000)
          AND current_setting('hnsw.ef_search', true)
              = least(1000, greatest(coalesce(f.ef_search, m.ef_search), f.k))::text
          AND {vs}.vector_dims(f.query) = m.dims
          AND -(f.query OPERATOR({vs}.<#>) f.query) < 'Infinity'::float8
          AND (m.metric <> 'cosine' OR -(f.query OPERATOR({vs}.<#>) f.query) <> 0)"""
    conn.execute(f"""CREATE FUNCTION designs.g({args}) {out} LANGUAGE sql VOLATILE {secure} {generic}
SET hnsw.ef_search = 40 SET enable_sort = off AS $f$
  SELECT CASE WHEN g.k BETWEEN 1 AND 1000 AND (g.ef_search IS NULL OR g.ef_search BETWEEN 1 AND 1000)
              AND {vs}.vector_dims(g.query) = m.dims AND -(g.query OPERATOR({vs}.<#>) g.query) < 'Infinity'::float8
              AND (m.metric <> 'cosine' OR -(g.query OPERATOR({vs}.<#>) g.query) <> 0)
         THEN set_config('hnsw.ef_search', least(1000, greatest(coalesce(g.ef_search, m.ef_search), g.k))::text, true)
         ELSE pgvision._check_query(g.query, m, g.k, g.ef_search)::text END
    FROM pgvision.models m WHERE m.name = g.model AND m.kind = 'image';
  SELECT s.image_id, s.uri, s.label, s.d, 1 - s.d FROM (
    SELECT e.image_id, i.uri, i.label, ({key} {op} g.query)::float8 AS d
    FROM pgvision.image_embeddings e JOIN pgvision.images i ON i.image_id = e.image_id
    WHERE e.model_id = {model_id} ORDER BY {key} {op} g.query LIMIT g.k) s
  ORDER BY s.d, s.image_id;
$f$""")
    conn.execute(f"""CREATE FUNCTION designs.f({args}) {out} LANGUAGE sql STABLE BEGIN ATOMIC
  WITH g AS ({gate})
  SELECT u.image_id, u.uri, u.label, u.distance, u.similarity FROM (
    SELECT s.image_id, s.uri, s.label, s.d AS distance, 1 - s.d AS similarity FROM (
      SELECT e.image_id, i.uri, i.label, ({key} {op} f.query)::float8 AS d
      FROM pgvision.image_embeddings e LEFT JOIN pgvision.images i ON i.image_id = e.image_id
      WHERE e.model_id = {model_id} AND (SELECT g.model_id FROM g) = {model_id}
      ORDER BY {key} {op} f.query LIMIT f.k) s
    UNION ALL
    SELECT x.image_id, x.uri, x.label, x.distance, x.similarity
    FROM pgvision.search_images(f.query, f.k, f.model, ef_search => f.ef_search) x
    WHERE NOT EXISTS (SELECT 1 FROM g)) u
  ORDER BY u.distance, u.image_id;
END""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="vectors (default 100,000)")
    ap.add_argument("--queries", type=int, default=200, help="held-out queries per round (default 200)")
    ap.add_argument("--target-recall", type=float, default=None,
                    help="run the recall ladder (pgvision db index --target-recall) after the build and time "
                         "at the ef_search it stores; default: pgvector's ef_search 40")
    ap.add_argument("--unprepared", action="store_true",
                    help="plan every call (psycopg prepare_threshold=None), as psql and literal-SQL clients do")
    common.add_server_args(ap)
    a = ap.parse_args()
    results = {"benchmark": "search_designs", "args": {k: str(v) for k, v in vars(a).items()}}
    with common.bench_database("designs", a.data_dir) as url:
        conn = common.connect(url)
        results["machine"] = common.machine(conn)
        common.print_machine(results["machine"])
        x = common.normalize(common.clustered(a.rows + a.queries, DIMS, 1000, seed=a.rows))
        x, queries = x[:a.rows], x[a.rows:]
        model_id, _ = common.store_image_vectors(conn, "designs", x)
        ddl.set_index(conn, "designs", method="hnsw")
        if a.target_recall is not None:
            from pgvision.index import recall_target

            print(recall_target.choose_setting(conn, "designs", a.target_recall))
        ef = conn.execute("SELECT ef_search FROM pgvision.models WHERE model_id = %s", (model_id,)).fetchone()[0]
        create_designs(conn, model_id)
        if a.unprepared:
            conn.prepare_threshold = None
        common.install_variant(conn, "designs", "search_images", "functions/search_images.v3.sql",
                        {"pgvision.search_images(": "designs.search_images_v3(",
                         "search_images.label": "search_images_v3.label"})
        raw = (f"SELECT image_id FROM pgvision.image_embeddings WHERE model_id = {model_id} "
               f"ORDER BY embedding::vector({DIMS}) <=> %s::vector({DIMS}) LIMIT 10")
        conn.execute(f"SET hnsw.ef_search = {int(ef)}")  # for raw, D, E1-E3 (they do not set it)
        api = "SELECT image_id FROM {}(%s, 10, 'designs')"
        variants = {
            "raw (ids)": raw,
            "raw + images": (f"SELECT c.image_id, i.uri, i.label FROM ({raw}) c "
                             "JOIN pgvision.images i ON i.image_id = c.image_id"),
            "search_images (the API, as installed)": api.format("pgvision.search_images"),
            "search_images v3 (0007)": api.format("designs.search_images_v3"),
            "B: v3, lookup + checks inlined": api.format("designs.b"),
            "C: one layer, generic plan": api.format("designs.c"),
            "D: C without the settings": api.format("designs.d"),
            "E1: plpgsql RETURN QUERY": api.format("designs.e1"),
            "E2: E1 + SET search_path": api.format("designs.e2"),
            "E3: inlinable LANGUAGE sql": api.format("designs.e3"),
            "F: inlinable, gated, v4 fallback": api.format("designs.f"),
            "F, all columns": "SELECT * FROM designs.f(%s, 10, 'designs')",
            "G: LANGUAGE sql, plan-cached, SET clauses": api.format("designs.g"),
            "G, all columns": "SELECT * FROM designs.g(%s, 10, 'designs')",
            "search_images, all columns": "SELECT * FROM pgvision.search_images(%s, 10, 'designs')",
        }
        want = [r[0] for r in conn.execute(raw, (queries[0],))]
        for name, sql in variants.items():
            for q in queries[:20]:  # warm: plans cached, functions compiled
                conn.execute(sql, (q,)).fetchall()
            got = [r[0] for r in conn.execute(sql, (queries[0],))]
            assert sorted(got) == sorted(want), (name, got, want)
        names = list(variants)
        qps: dict[str, list[float]] = {k: [] for k in variants}
        for rep in range(a.reps):
            shift = rep % len(names)
            for name in names[shift:] + names[:shift]:
                t = time.perf_counter()
                for q in queries:
                    conn.execute(variants[name], (q,)).fetchall()
                qps[name].append(len(queries) / (time.perf_counter() - t))
        conn.close()
    med = {k: float(np.median(v)) for k, v in qps.items()}
    ratio = {k: float(np.median(np.array(v) / np.array(qps["raw (ids)"]))) for k, v in qps.items()}
    ratio_img = {k: float(np.median(np.array(v) / np.array(qps["raw + images"]))) for k, v in qps.items()}
    rows = [[k, med[k], ratio[k], ratio_img[k],
             ", ".join(f"{v:.0f}" for v in qps[k])] for k in variants]
    common.print_table(["variant", "median QPS", "/ raw", "/ raw + images", "QPS by round"], rows,
                       f"{a.rows:,} x {DIMS}, HNSW ef_search {ef}, {a.queries} queries x {a.reps} rounds, "
                       "one connection, blocks rotated, "
                       + ("unprepared (planned every call)" if a.unprepared else "prepared by psycopg after 5 calls")
                       + "; ratios: median over rounds of the same round's ratio")
    results.update(qps=qps, median_qps=med, median_ratio_to_raw=ratio, median_ratio_to_raw_images=ratio_img)
    common.write_results("search_designs_unprepared" if a.unprepared else "search_designs", results)


if __name__ == "__main__":
    main()
