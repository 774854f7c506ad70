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
--
-- Purpose: top-k stored images nearest to a query embedding, nearest first.
-- Arguments:
--   query      the probe embedding (vector), as many dims as the model (e.g. 1280 for efficientnet-lite0).
--   k          rows wanted, 1..1000 (default 10).
--   model      model name in pgvision.models; NULL = the default image model.
--   label      only images with this label; NULL = all. Always k rows when k such images exist.
--   ef_search  HNSW candidate list (recall/speed trade-off); NULL = the model's (default 40).
--   filter     only images whose metadata contains this jsonb, e.g. '{"camera": "x100"}'.
-- Returns: distance in the model's metric (cosine: 0 = same direction .. 2 = opposite;
--   L2: >= 0) and similarity (cosine: 1 - distance; L2: 1/(1+distance)).
-- Fails: 22023 k outside 1..1000, wrong query dimension, zero (cosine) or overflowing
--   query (v2); 22004 NULL query;
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
AS $fn$
DECLARE
    m pgvision.models := pgvision._resolve_model(model, 'image');
BEGIN
    PERFORM pgvision._check_query(query, m, k, ef_search);
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
'Args: query vector, k 1..1000 (10), model (default image model), label filter, ef_search (model''s, 40), metadata filter jsonb. '
'Filtered searches return k rows whenever k matching images exist.';
