-- pgvision.similar_images(image_id, k, model, label, ef_search)
--   -> SETOF pgvision.image_hit (image_id bigint, uri text, label text, distance double precision,
--                                similarity double precision)
-- v2 (issue 8): pgvector's types, operators and functions schema-qualified
--   (@extschema:vector@), search_path pg_catalog, pgvision, pg_temp: objects other roles
--   create in pgvector's schema can no longer shadow a call.
--
-- Purpose: top-k images nearest to an image already stored, that image excluded. What a
-- BI tool calls with no vector in hand: SELECT * FROM pgvision.similar_images(42).
-- Arguments:
--   image_id   pgvision.images.image_id of the probe; it must have an embedding of the model.
--   k          rows wanted, 1..1000 (default 10).
--   model      model name; NULL = the default image model.
--   label      only images with this label; NULL = all.
--   ef_search  HNSW candidate list; NULL = the model's.
-- Returns: as search_images.
-- Fails: 22023 k outside 1..1000; 22004 NULL image_id; P0002 no such image, or no
--   embedding of that model for it; 42704 unknown model.
CREATE OR REPLACE FUNCTION pgvision.similar_images(
    image_id bigint,
    k integer DEFAULT 10,
    model text DEFAULT NULL,
    label text DEFAULT NULL,
    ef_search integer DEFAULT NULL)
RETURNS SETOF pgvision.image_hit
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $fn$
DECLARE
    m pgvision.models := pgvision._resolve_model(model, 'image');
    probe @extschema:vector@.vector;
BEGIN
    IF similar_images.image_id IS NULL THEN
        RAISE EXCEPTION 'image_id must not be NULL: pass an image_id from pgvision.images'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT e.embedding INTO probe FROM pgvision.image_embeddings e
    WHERE e.model_id = m.model_id AND e.image_id = similar_images.image_id;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM pgvision.images i WHERE i.image_id = similar_images.image_id) THEN
            RAISE EXCEPTION 'no image with image_id %', similar_images.image_id
                USING ERRCODE = 'no_data_found', HINT = 'pick one from pgvision.images';
        END IF;
        RAISE EXCEPTION 'image % has no % embedding: load it with pgvision load --model %',
            similar_images.image_id, quote_literal(m.name), m.name
            USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM pgvision._check_query(probe, m, k, ef_search);
    RETURN QUERY
        SELECT n.item_id, i.uri, i.label, n.distance, pgvision._similarity(n.distance, m.metric)
        FROM pgvision._nearest(m, probe, k, label => similar_images.label,
                               exclude_id => similar_images.image_id, ef_search => ef_search) n
        JOIN pgvision.images i ON i.image_id = n.item_id
        ORDER BY n.distance, n.item_id;
END
$fn$;

COMMENT ON FUNCTION pgvision.similar_images(bigint, integer, text, text, integer) IS
'Top-k images nearest to a stored image (itself excluded), nearest first: (image_id, uri, label, distance, similarity). '
'Args: image_id, k 1..1000 (10), model (default image model), label filter, ef_search.';
