-- pgvision.search_images(query, k, model, label, ef_search, filter)
--   -> SETOF pgvision.image_hit (image_id bigint, uri text, label text, distance double precision,
--                                similarity double precision)
-- v2 (issue 8): pgvector's types, operators and functions schema-qualified
--   (@extschema:vector@), search_path pg_catalog, pgvision, pg_temp: objects other roles
--   create in pgvector's schema can no longer shadow a call.
-- v3 (issue 13, item 5): an unfiltered search of an indexed model runs pgvision._ann, the
--   model's static ANN statement generated when the model was registered (_model_ann.v1.sql),
--   whose plan is cached per session, instead of _nearest's query text planned on every call
--   (EXECUTE). Filtered and exact searches go through _nearest as before.
-- v4 (issue 13, item 5): one plpgsql layer instead of three for that search. The model row
--   is read by a cached statement (_resolve_model only for its errors and default rules),
--   the argument checks run inline (_check_query only to raise), and the model's static
--   statement -- the ANN query joined to images, ordered by (distance, image_id) -- sits in
--   this function, between the two "generated branches" lines below, rewritten by the
--   pgvision._model_ann() trigger (_model_ann.v2.sql) whenever an image model is registered,
--   removed or changes kind, dims, metric or quantization: one `WHEN <model_id> THEN RETURN
--   QUERY ...` per full-precision or halfvec image model, built from integers and fixed
--   keywords only. Applied from this file the region is empty and every search takes the v3
--   path, which stays for binary-quantized models (their re-ranking subquery, _ann) and
--   models registered meanwhile. plan_cache_mode = force_generic_plan: the statement's
--   `LIMIT k` would otherwise make the plan cache re-plan it on every call (a custom plan
--   for each k looks cheaper than the generic one); the generic plan is the index walk
--   (enable_sort off while it runs, so with or without statistics), nested-loop join to
--   images, sort of the k rows. Measured: bench/search_designs.py, docs/benchmarks.md.
--
-- Purpose: top-k stored images nearest to a query embedding, nearest first.
-- Arguments:
--   query      the probe embedding (vector), as many dims as the model (e.g. 1280 for efficientnet-lite0).
--   k          rows wanted, 1..1000 (default 10).
--   model      model name in pgvision.models; NULL = the default image model.
--   label      only images with this label; NULL = all. Always k rows when k such images exist.
--   ef_search  HNSW candidate list (recall/speed trade-off); NULL = the model's (chosen for
--              its target recall, model_stats).
--   filter     only images whose metadata contains this jsonb, e.g. '{"camera": "x100"}'.
-- Returns: distance in the model's metric (cosine: 0 = same direction .. 2 = opposite;
--   L2: >= 0) and similarity (cosine: 1 - distance; L2: 1/(1+distance)); ties in distance
--   by image_id.
-- Fails: 22023 k outside 1..1000, ef_search outside 1..1000, wrong query dimension, zero
--   (cosine) or overflowing query; 22004 NULL query or k;
--   42704 unknown model; 55000 no image model loaded yet.
CREATE OR REPLACE FUNCTION pgvision.search_images(
    query @extschema:vector@.vector,
    k integer DEFAULT 10,
    model text DEFAULT NULL,
    label text DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    filter jsonb DEFAULT NULL)
RETURNS SETOF pgvision.image_hit
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
SET plan_cache_mode = force_generic_plan
AS $fn$
DECLARE
    m pgvision.models;
    sq double precision;
    old_ef text;
    old_probes text;
    old_sort text;
    want text;
    done boolean;
BEGIN
    IF model IS NOT NULL THEN
        SELECT * INTO m FROM pgvision.models x WHERE x.name = model AND x.kind = 'image';
    ELSE
        SELECT * INTO m FROM pgvision.models x WHERE x.kind = 'image' AND x.is_default;
    END IF;
    IF m.model_id IS NULL THEN
        m := pgvision._resolve_model(model, 'image');  -- raises, or applies the default rules
    END IF;
    sq := -(query OPERATOR(@extschema:vector@.<#>) query);
    IF k IS NULL OR k < 1 OR k > 1000 OR ef_search < 1 OR ef_search > 1000 OR query IS NULL
       OR @extschema:vector@.vector_dims(query) <> m.dims OR NOT (sq < 'Infinity'::float8)
       OR (m.metric = 'cosine' AND sq = 0) THEN
        PERFORM pgvision._check_query(query, m, k, ef_search);  -- raises with the reason
    END IF;
    IF search_images.label IS NULL AND filter IS NULL AND m.index_method IN ('hnsw', 'ivfflat')
       AND m.quantization <> 'binary' THEN
        IF m.index_method = 'hnsw' THEN
            old_ef := current_setting('hnsw.ef_search', true);
            want := least(1000, greatest(coalesce(ef_search, m.ef_search), k))::text;
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
        done := true;
        CASE m.model_id
            WHEN NULL THEN  -- never taken: keeps the CASE valid while no branch is generated
                done := false;
            -- BEGIN generated branches: pgvision._model_ann() writes one WHEN per image model here
            -- END generated branches
            ELSE
                done := false;
        END CASE;
        IF old_sort <> 'off' THEN
            PERFORM set_config('enable_sort', old_sort, true);
        END IF;
        IF m.index_method = 'hnsw' AND want IS DISTINCT FROM old_ef THEN
            PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
        ELSIF m.index_method = 'ivfflat' AND want IS DISTINCT FROM old_probes THEN
            PERFORM set_config('ivfflat.probes', coalesce(old_probes, '1'), true);
        END IF;
        IF done THEN
            RETURN;
        END IF;
    END IF;
    IF search_images.label IS NULL AND filter IS NULL THEN
        RETURN QUERY
            SELECT n.item_id, i.uri, i.label, n.distance, pgvision._similarity(n.distance, m.metric)
            FROM pgvision._ann(m, query, k, ef_search) n
            JOIN pgvision.images i ON i.image_id = n.item_id
            ORDER BY n.distance, n.item_id;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT n.item_id, i.uri, i.label, n.distance, pgvision._similarity(n.distance, m.metric)
        FROM pgvision._nearest(m, query, k, label => search_images.label, filter => filter,
                               ef_search => ef_search) n
        JOIN pgvision.images i ON i.image_id = n.item_id
        ORDER BY n.distance, n.item_id;
END
$fn$;

COMMENT ON FUNCTION pgvision.search_images(@extschema:vector@.vector, integer, text, text, integer, jsonb) IS
'Top-k images nearest to a query embedding, nearest first: (image_id, uri, label, distance, similarity). '
'Args: query vector, k 1..1000 (10), model (default image model), label filter, ef_search (model''s), metadata filter jsonb. '
'Filtered searches return k rows whenever k matching images exist.';
