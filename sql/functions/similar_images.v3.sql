-- pgvision.similar_images(image_id, k, model, label, ef_search, collection)
--   -> SETOF pgvision.image_hit (image_id bigint, uri text, label text, distance double precision,
--                                similarity double precision)
-- v3: collections. `collection` keeps the neighbours of that collection only (NULL = every
--   image the caller may see); runs with the caller's rights, so row-level security hides
--   other collections' images, and an image of another collection is answered as a missing
--   one (P0002, the same text). Scoped searches take _nearest.v5's filtered path: k rows
--   whenever k exist.
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
--   collection  only rows of this collection (pgvision.collections.name); NULL = every row the
--               caller may see (row-level security).
-- Returns: as search_images.
-- Fails: 22023 k outside 1..1000; 22004 NULL image_id; P0002 no such image, or no
--   embedding of that model for it; 42704 unknown model, or a collection that does not exist
--   or is not granted to the caller.
CREATE OR REPLACE FUNCTION pgvision.similar_images(
    image_id bigint,
    k integer DEFAULT 10,
    model text DEFAULT NULL,
    label text DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    collection text DEFAULT NULL)
RETURNS SETOF pgvision.image_hit
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $fn$
DECLARE
    m pgvision.models := pgvision._resolve_model(model, 'image');
    probe @extschema:vector@.vector;
    cid integer := pgvision._collection_id(collection);
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
                               exclude_id => similar_images.image_id, ef_search => ef_search,
                               collection_id => cid) n
        JOIN pgvision.images i ON i.image_id = n.item_id
        ORDER BY n.distance, n.item_id;
END
$fn$;

COMMENT ON FUNCTION pgvision.similar_images(bigint, integer, text, text, integer, text) IS
'Top-k images nearest to a stored image (itself excluded), nearest first: (image_id, uri, label, distance, similarity). '
'Args: image_id, k 1..1000 (10), model (default image model), label filter, ef_search, collection (NULL = every collection you may see). '
'Fails (SQLSTATE): 22004 NULL image_id or k; 22023 k or ef_search outside 1..1000, a face model named, or several image models and none the default; '
'P0002 no such image, or no embedding of that model for it; 42704 unknown model, or a collection that does not exist or is not granted to you; '
'55000 no image model loaded yet.';
