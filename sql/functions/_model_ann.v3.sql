-- pgvision._model_ann() -> trigger (AFTER INSERT OR DELETE OR UPDATE OF kind, dims, metric,
--   quantization ON pgvision.models, FOR EACH STATEMENT)
-- v3: binary-quantized models re-rank deeper than the HNSW candidate list: the Hamming walk
--   runs as a pgvector 0.8 iterative scan (hnsw.iterative_scan = relaxed_order, or
--   ivfflat.iterative_scan for an IVFFlat index) and yields depth = min(10,000, 10 x
--   max(ef_search, k)) candidates, where an HNSW scan without it stops at ef_search (at most
--   1,000): at 1M x 512 those 1,000 Hamming candidates held recall@10 at 0.937
--   (docs/benchmarks.md). The walk is bounded: hnsw.max_scan_tuples = max(20,000, 5 x depth)
--   tuples (pgvector's default is 20,000), ivfflat.max_probes = 10 x the model's probes;
--   each restored before _ann returns. ef_search stays the one knob (recall_target tunes it)
--   and widens both the walk and the re-ranking; _nearest.v4 uses the same rule, so
--   recall_at_k measures what searches get. search_images' generated branches keep only the
--   hits within its max_distance argument (search_images.v5). The generated region is found
--   in every pgvision function named search_images, whatever its arguments.
--
-- Purpose: code and indexes that follow the registered models.
--   1. Writes pgvision._ann(m, query, k, ef_search) -> TABLE (item_id bigint, distance
--      double precision): the k stored embeddings of model m nearest to query, by the
--      model's ANN index, unfiltered. One static statement per model, chosen by
--      `CASE m.model_id`, holding the model's literal index expression and partial-index
--      predicate (`WHERE e.model_id = 3 ORDER BY e.embedding::vector(512) <=> query::vector(512)
--      LIMIT 1000`; halfvec(D) for halfvec models and dims > 2,000; binary: Hamming order of
--      binary_quantize(...)::bit(D) over `depth` candidates (above), re-ranked by the
--      full-precision distance, pgvector README "Binary Quantization"). Static SQL in
--      plpgsql is planned once per session and then reused (plan cache); the statement's
--      LIMIT is the constant 1000 (k's largest value) and the loop stops after k rows (the
--      HNSW scan yields rows lazily), so that the generic plan is kept
--      (bench/profile_search.py). Settings: hnsw.ef_search = max(ef_search or the model's,
--      k), capped at 1,000, or ivfflat.probes = the model's; enable_sort off (the index walk
--      is the only ordered plan, with or without statistics); the iterative-scan settings
--      above for binary models; each restored before it returns. A model_id it does not
--      know (none) is answered by pgvision._nearest. The generated text is built from
--      integers (model_id, dims) and fixed keywords only; no name or other stored text
--      reaches it.
--   2. Face models: creates the HNSW index of the model's identity templates
--      (identity_templates_model_<id>_hnsw on (template::vector(D)), halfvec(D) above 2,000
--      dims, the model's metric, m and ef_construction), and drops it with the model.
--   3. Rewrites the generated region of pgvision.search_images: its current definition
--      (pg_get_functiondef) with the lines between "-- BEGIN generated branches" and "-- END
--      generated branches" replaced by one branch per full-precision or halfvec image model:
--      `WHEN <model_id> THEN RETURN QUERY SELECT ... FROM (SELECT e.image_id, i.uri, i.label,
--      (<key> <op> <q>)::float8 AS distance FROM pgvision.image_embeddings e JOIN
--      pgvision.images i ON ... WHERE e.model_id = <id> ORDER BY <key> <op> <q> LIMIT k) s
--      WHERE max_distance IS NULL OR s.distance <= max_distance ORDER BY s.distance,
--      s.image_id;` (same key, operator and cast as the _ann branch). Everything else in
--      search_images stays as its file wrote it; a definition without the two lines is left
--      alone. The branches name search_images' arguments query, k and max_distance: a
--      version of search_images with the two lines has those arguments.
-- Concurrency: a transaction-scoped advisory lock (class 'pgva') makes registrations take
--   turns, and the models are read after it is granted, so the last writer's _ann knows
--   every committed model.
-- Rights: SECURITY DEFINER (the schema owner, who owns _ann): pgvision_loader registers
--   models and may not create functions or indexes. Not callable directly (a trigger).
CREATE OR REPLACE FUNCTION pgvision._model_ann()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    c_lock_class constant integer := 1885828705;  -- 'pgva'
    vs text;
    r record;
    typ text;
    op text;
    key text;
    q text;
    tbl text;
    item text;
    ids integer[] := '{}';
    branches text := '';
    image_branches text := '';
    c_begin constant text := '-- BEGIN generated branches: pgvision._model_ann() writes one WHEN per image model here';
    c_end constant text := '-- END generated branches';
    fn regprocedure;
    def text;
    b integer;
    e integer;
    idx text;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(c_lock_class, 0);
    -- pgvector's schema, quoted (migrate.apply_sql replaces the token): the generated code
    -- names pgvector's types and operators explicitly, as every other function does.
    vs := $vs$@extschema:vector@$vs$;
    FOR r IN SELECT mo.model_id, mo.kind, mo.dims, mo.metric, mo.quantization
             FROM pgvision.models mo ORDER BY mo.model_id LOOP
        typ := CASE WHEN r.dims > 2000 OR r.quantization = 'halfvec' THEN vs || '.halfvec' ELSE vs || '.vector' END;
        op := format('OPERATOR(%s.%s)', vs, CASE r.metric WHEN 'cosine' THEN '<=>' WHEN 'l2' THEN '<->' ELSE '<#>' END);
        tbl := CASE r.kind WHEN 'image' THEN 'image_embeddings' ELSE 'face_embeddings' END;
        item := CASE r.kind WHEN 'image' THEN 'image_id' ELSE 'face_id' END;
        key := format('e.embedding::%s(%s)', typ, r.dims::integer);
        q := format('query::%s(%s)', typ, r.dims::integer);
        ids := ids || r.model_id::integer;
        IF r.quantization = 'binary' THEN
            branches := branches || format(
                E'\n        WHEN %1$s THEN\n            RETURN QUERY SELECT c.item_id, c.distance FROM ('
                'SELECT e.%2$s AS item_id, (%3$s %4$s %5$s)::float8 AS distance FROM pgvision.%6$s e '
                'WHERE e.model_id = %1$s ORDER BY %7$s.binary_quantize(%3$s)::bit(%8$s) OPERATOR(%7$s.<~>) '
                '%7$s.binary_quantize(%5$s)::bit(%8$s) LIMIT depth) c ORDER BY c.distance LIMIT k;',
                r.model_id::integer, item, key, op, q, tbl, vs, r.dims::integer);
        ELSE
            IF r.kind = 'image' THEN
                image_branches := image_branches || format(
                    E'\n            WHEN %1$s THEN\n                RETURN QUERY SELECT s.image_id, s.uri, s.label, s.distance, '
                    'pgvision._similarity(s.distance, m.metric) FROM (SELECT e.image_id, i.uri, i.label, '
                    '(%2$s %3$s %4$s)::float8 AS distance FROM pgvision.image_embeddings e '
                    'JOIN pgvision.images i ON i.image_id = e.image_id WHERE e.model_id = %1$s '
                    'ORDER BY %2$s %3$s %4$s LIMIT k) s WHERE max_distance IS NULL OR s.distance <= max_distance '
                    'ORDER BY s.distance, s.image_id;',
                    r.model_id::integer, key, op, q);
            END IF;
            branches := branches || format(
                E'\n        WHEN %1$s THEN\n            FOR item_id, distance IN SELECT e.%2$s, (%3$s %4$s %5$s)::float8 FROM pgvision.%6$s e WHERE e.model_id = %1$s ORDER BY %3$s %4$s %5$s LIMIT 1000 LOOP\n                RETURN NEXT;\n                n := n + 1;\n                EXIT WHEN n >= k;\n            END LOOP;',
                r.model_id::integer, item, key, op, q, tbl);
        END IF;
    END LOOP;
    IF branches = '' THEN
        branches := E'\n        WHEN NULL THEN NULL;';
    END IF;
    EXECUTE format($gen$
CREATE OR REPLACE FUNCTION pgvision._ann(
    m pgvision.models,
    query %1$s.vector,
    k integer,
    ef_search integer DEFAULT NULL)
RETURNS TABLE (item_id bigint, distance double precision)
LANGUAGE plpgsql VOLATILE
ROWS 10
SET search_path = pg_catalog, pgvision, pg_temp
AS $body$
-- Generated by pgvision._model_ann() (sql/functions/_model_ann.v3.sql) whenever a model is
-- registered, removed, or changes kind, dims, metric or quantization: do not edit.
DECLARE
    lim integer := least(1000, greatest(coalesce(ef_search, m.ef_search), k));
    -- binary models: Hamming candidates re-ranked at full precision (iterative scan)
    depth integer := least(10000, 10 * least(1000, greatest(coalesce(ef_search, m.ef_search), k)));
    old_iter text;
    old_bound text;
    deep boolean := m.quantization = 'binary';
    old_ef text;
    old_probes text;
    old_sort text;
    want text;
    n integer := 0;
BEGIN
    IF m.model_id <> ALL (%2$L::integer[]) OR m.index_method = 'none' THEN
        RETURN QUERY SELECT n.item_id, n.distance FROM pgvision._nearest(m, query, k, ef_search => ef_search) n;
        RETURN;
    END IF;
    IF m.index_method = 'hnsw' THEN
        old_ef := current_setting('hnsw.ef_search', true);
        want := lim::text;
        IF want IS DISTINCT FROM old_ef THEN
            PERFORM set_config('hnsw.ef_search', want, true);
        END IF;
    ELSE
        old_probes := current_setting('ivfflat.probes', true);
        want := coalesce(m.probes, 1)::text;
        IF want IS DISTINCT FROM old_probes THEN
            PERFORM set_config('ivfflat.probes', want, true);
        END IF;
    END IF;
    old_sort := current_setting('enable_sort');
    IF old_sort <> 'off' THEN
        PERFORM set_config('enable_sort', 'off', true);
    END IF;
    IF deep AND m.index_method = 'hnsw' THEN
        old_iter := current_setting('hnsw.iterative_scan', true);
        old_bound := current_setting('hnsw.max_scan_tuples', true);
        PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
        PERFORM set_config('hnsw.max_scan_tuples', greatest(20000, 5 * depth)::text, true);
    ELSIF deep THEN
        old_iter := current_setting('ivfflat.iterative_scan', true);
        old_bound := current_setting('ivfflat.max_probes', true);
        PERFORM set_config('ivfflat.iterative_scan', 'relaxed_order', true);
        PERFORM set_config('ivfflat.max_probes', (10 * coalesce(m.probes, 1))::text, true);
    END IF;
    CASE m.model_id%3$s
        ELSE NULL;
    END CASE;
    IF old_sort <> 'off' THEN
        PERFORM set_config('enable_sort', old_sort, true);
    END IF;
    IF deep AND m.index_method = 'hnsw' THEN
        PERFORM set_config('hnsw.iterative_scan', coalesce(old_iter, 'off'), true);
        PERFORM set_config('hnsw.max_scan_tuples', coalesce(old_bound, '20000'), true);
    ELSIF deep THEN
        PERFORM set_config('ivfflat.iterative_scan', coalesce(old_iter, 'off'), true);
        PERFORM set_config('ivfflat.max_probes', coalesce(old_bound, '32768'), true);
    END IF;
    IF m.index_method = 'hnsw' AND want IS DISTINCT FROM old_ef THEN
        PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
    ELSIF m.index_method <> 'hnsw' AND want IS DISTINCT FROM old_probes THEN
        PERFORM set_config('ivfflat.probes', coalesce(old_probes, '1'), true);
    END IF;
END
$body$$gen$, vs, ids, branches);
    EXECUTE format('COMMENT ON FUNCTION pgvision._ann(pgvision.models, %s.vector, integer, integer) IS %L', vs,
                   'Internal, generated per model by pgvision._model_ann(): k nearest embeddings of a model by its ANN index, '
                   'unfiltered, by a static (plan-cached) statement per model. Use search_images.');
    -- 3. search_images' generated region, in each installed definition that has one.
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pgvision'::regnamespace AND p.proname = 'search_images'
              ORDER BY p.oid LOOP
        def := pg_catalog.pg_get_functiondef(fn);
        b := strpos(def, c_begin);
        e := strpos(def, c_end);
        IF b > 0 AND e > b THEN
            EXECUTE substr(def, 1, b + length(c_begin) - 1) || image_branches || E'\n            ' || substr(def, e);
        END IF;
    END LOOP;
    -- 2. The template index of every face model, and none for models that are gone.
    FOR r IN SELECT mo.model_id, mo.dims, mo.metric, mo.hnsw_m, mo.hnsw_ef_construction
             FROM pgvision.models mo
             WHERE mo.kind = 'face' AND mo.dims <= 4000
               AND to_regclass(format('pgvision.identity_templates_model_%s_hnsw', mo.model_id)) IS NULL LOOP
        typ := CASE WHEN r.dims > 2000 THEN 'halfvec' ELSE 'vector' END;
        EXECUTE format('CREATE INDEX identity_templates_model_%1$s_hnsw ON pgvision.identity_templates '
                       'USING hnsw ((template::%2$s.%3$s(%4$s)) %2$s.%3$s_%5$s) '
                       'WITH (m = %6$s, ef_construction = %7$s) WHERE model_id = %1$s',
                       r.model_id::integer, vs, typ, r.dims::integer,
                       CASE r.metric WHEN 'cosine' THEN 'cosine_ops' WHEN 'l2' THEN 'l2_ops' ELSE 'ip_ops' END,
                       r.hnsw_m::integer, r.hnsw_ef_construction::integer);
    END LOOP;
    FOR idx IN SELECT c.relname FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
               WHERE i.indrelid = 'pgvision.identity_templates'::regclass
                 AND c.relname ~ '^identity_templates_model_[0-9]+_hnsw$'
                 AND NOT EXISTS (SELECT 1 FROM pgvision.models mo
                                 WHERE mo.kind = 'face' AND c.relname = format('identity_templates_model_%s_hnsw', mo.model_id)) LOOP
        EXECUTE format('DROP INDEX pgvision.%I', idx);
    END LOOP;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION pgvision._model_ann() IS
'Internal trigger on pgvision.models: regenerates pgvision._ann (one static, plan-cached ANN statement per model; binary models re-ranked over an iterative, bounded Hamming scan) and search_images'' per-model branches, and creates / drops the HNSW index of each face model''s identity templates.';
