-- pgvision.search_images(query, k, model, label, ef_search, filter, max_distance, collection)
--   -> SETOF pgvision.image_hit (image_id bigint, uri text, label text, distance double precision,
--                                similarity double precision)
-- v6: collections. `collection` (a name from pgvision.collections) keeps the hits of that
--   collection only; NULL = every row the caller may see. Row-level security decides what a
--   caller may see (pgvision.collection_grants; the schema owner sees every collection), and
--   this function runs with the caller's rights, so it never returns another collection's row.
--   A call that names a collection, or a caller under row-level security, takes the filtered
--   path (_nearest.v5: a small collection by an exact scan of its rows, a collection with its
--   own partial index by that index, otherwise the model's index by a bounded iterative scan,
--   and an exact scan when that still finds fewer than k): k rows whenever k exist in the
--   collection. The generated per-model branches and _ann are the unscoped path (the schema
--   owner, or a database without collections granted to anyone but its owner).
-- v5: range search. max_distance keeps only the hits within that distance (of the k nearest,
--   those with distance <= max_distance; none when nothing is that near). The cut is applied
--   to the k rows the ANN walk (or _nearest's filtered path) already found, outside the
--   index scan, as pgvector's README advises for distance filters (a materialised top-k,
--   then `WHERE distance < x`): the walk is the one a search without max_distance makes, so
--   an empty answer costs what a full one does. Putting the distance in the scan's WHERE
--   with an iterative scan instead makes a query that matches nothing visit
--   hnsw.max_scan_tuples tuples (20,000 by default) before it gives up. The generated
--   per-model branches (between the two "generated branches" lines, written by
--   pgvision._model_ann(), sql/functions/_model_ann.v3.sql) apply the same cut.
--   Otherwise as v4: one plpgsql layer for an unfiltered search of an indexed model, the
--   model's static statement generated into this function, plan_cache_mode =
--   force_generic_plan (bench/search_designs.py, docs/benchmarks.md).
--
-- Purpose: top-k stored images nearest to a query embedding, nearest first.
-- Arguments:
--   query         the probe embedding (vector), as many dims as the model (e.g. 1280 for efficientnet-lite0).
--   k             rows wanted, 1..1000 (default 10).
--   model         model name in pgvision.models; NULL = the default image model.
--   label         only images with this label; NULL = all. Always k rows when k such images exist.
--   ef_search     HNSW candidate list (recall/speed trade-off); NULL = the model's (chosen for
--                 its target recall, model_stats).
--   filter        only images whose metadata contains this jsonb, e.g. '{"camera": "x100"}'.
--   max_distance  only hits at this distance or nearer, in the model's metric (cosine
--                 distance 0..2, L2 >= 0; inner product: pgvector's negative inner product);
--                 NULL = no limit.
--   collection    only images of this collection (pgvision.collections.name); NULL = every
--                 image the caller may see (row-level security).
-- Returns: distance in the model's metric (cosine: 0 = same direction .. 2 = opposite;
--   L2: >= 0) and similarity (cosine: 1 - distance; L2: 1/(1+distance)); ties in distance
--   by image_id. At most k rows; fewer (or none) when max_distance leaves fewer.
-- Fails: 22004 NULL query or k; 22023 k or ef_search outside 1..1000, query of another
--   dimension than the model's, zero (cosine) or overflowing query, a face model named, or
--   several image models and none the default, max_distance NaN (or < 0 for a cosine or L2
--   model); 42704 unknown model, or a collection that does not exist or is not granted to the
--   caller; 55000 no image model loaded yet.
CREATE OR REPLACE FUNCTION pgvision.search_images(
    query @extschema:vector@.vector,
    k integer DEFAULT 10,
    model text DEFAULT NULL,
    label text DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    filter jsonb DEFAULT NULL,
    max_distance double precision DEFAULT NULL,
    collection text DEFAULT NULL)
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
    cid integer;
    scoped boolean;
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
    IF max_distance IS NOT NULL AND (max_distance = 'NaN'::float8 OR (max_distance < 0 AND m.metric <> 'inner_product')) THEN
        RAISE EXCEPTION 'max_distance must be a distance >= 0 in model %''s metric (%), got %: pass NULL for no limit, or e.g. 0.5',
            m.name, m.metric, max_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    cid := pgvision._collection_id(collection);
    scoped := cid IS NOT NULL OR row_security_active('pgvision.image_embeddings'::regclass);
    IF NOT scoped AND search_images.label IS NULL AND filter IS NULL AND m.index_method IN ('hnsw', 'ivfflat')
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
    IF NOT scoped AND search_images.label IS NULL AND filter IS NULL THEN
        RETURN QUERY
            SELECT n.item_id, i.uri, i.label, n.distance, pgvision._similarity(n.distance, m.metric)
            FROM pgvision._ann(m, query, k, ef_search) n
            JOIN pgvision.images i ON i.image_id = n.item_id
            WHERE max_distance IS NULL OR n.distance <= max_distance
            ORDER BY n.distance, n.item_id;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT n.item_id, i.uri, i.label, n.distance, pgvision._similarity(n.distance, m.metric)
        FROM pgvision._nearest(m, query, k, label => search_images.label, filter => filter,
                               ef_search => ef_search, collection_id => cid) n
        JOIN pgvision.images i ON i.image_id = n.item_id
        WHERE max_distance IS NULL OR n.distance <= max_distance
        ORDER BY n.distance, n.item_id;
END
$fn$;

COMMENT ON FUNCTION pgvision.search_images(@extschema:vector@.vector, integer, text, text, integer, jsonb, double precision, text) IS
'Top-k images nearest to a query embedding, nearest first: (image_id, uri, label, distance, similarity). '
'Args: query vector, k 1..1000 (10), model (default image model), label filter, ef_search (model''s), metadata filter jsonb, '
'max_distance (only hits this near, in the model''s metric; NULL = no limit), collection (NULL = every collection you may see). '
'Filtered searches, and searches within a collection, return k rows whenever k matching images exist. '
'Fails (SQLSTATE): 22004 NULL query or k; 22023 k or ef_search outside 1..1000, query of another dimension '
'than the model''s, zero (cosine) or overflowing query, a face model named, or several image models and none the default, '
'max_distance NaN or negative (cosine, L2); 42704 unknown model, or a collection that does not exist or is not granted to you; '
'55000 no image model loaded yet.';
