-- pgvision.duplicates_of(image_id, tier, model, max_distance, max_hash_distance) -> SETOF pgvision.duplicate_hit
--
-- Purpose: the duplicates of one stored image ("is this photo already in the collection
--   in another form?"): the image and the images that are its duplicates in the tier (see
--   pgvision.duplicate_groups for the tiers), as one group with its keeper. Direct
--   duplicates only (no chains through other images); candidates are the image's 100
--   nearest embeddings (the model's ANN index) and up to 100 images with its pHash (images_phash).
-- Arguments:
--   image_id           a pgvision.images.image_id with an embedding of the model.
--   tier, model, max_distance, max_hash_distance: as pgvision.duplicate_groups.
-- Returns: pgvision.duplicate_hit rows: the image and its duplicates, keeper first; no row
--   when it has none.
-- Fails (SQLSTATE): 22004 NULL image_id or tier; P0002 no such image, or no embedding of
--   the model for it; and those of pgvision.duplicate_groups.
-- Rights: SECURITY INVOKER: the caller's privileges and row-level security apply.
CREATE OR REPLACE FUNCTION pgvision.duplicates_of(
    image_id bigint,
    tier text DEFAULT 'same',
    model text DEFAULT NULL,
    max_distance double precision DEFAULT NULL,
    max_hash_distance integer DEFAULT NULL)
RETURNS SETOF pgvision.duplicate_hit
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    m pgvision.models := pgvision._resolve_model(model, 'image');
    lim record;
    pairs record;
BEGIN
    IF duplicates_of.image_id IS NULL THEN
        RAISE EXCEPTION 'image_id must not be NULL: pass an image_id from pgvision.images'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO lim FROM pgvision._duplicate_limits(m, tier, max_distance, max_hash_distance);
    IF NOT EXISTS (SELECT 1 FROM pgvision.image_embeddings e
                   WHERE e.model_id = m.model_id AND e.image_id = duplicates_of.image_id) THEN
        IF NOT EXISTS (SELECT 1 FROM pgvision.images i WHERE i.image_id = duplicates_of.image_id) THEN
            RAISE EXCEPTION 'no image with image_id %', duplicates_of.image_id
                USING ERRCODE = 'no_data_found', HINT = 'pick one from pgvision.images';
        END IF;
        RAISE EXCEPTION 'image % has no % embedding: load it with pgvision load --model %',
            duplicates_of.image_id, quote_literal(m.name), m.name
            USING ERRCODE = 'no_data_found';
    END IF;
    SELECT array_agg(p.a_id) AS a, array_agg(p.b_id) AS b INTO pairs
    FROM pgvision._duplicate_pairs(m, tier, lim.max_distance_out, lim.max_hash_distance_out, 100, duplicates_of.image_id) p;
    RETURN QUERY SELECT * FROM pgvision._duplicate_rows(m, pairs.a, pairs.b);
END
$fn$;

COMMENT ON FUNCTION pgvision.duplicates_of(bigint, text, text, double precision, integer) IS
'The image and its direct duplicates as one group, keeper first: duplicate_hit rows (see duplicate_groups); no row when it has none. '
'Args: image_id, tier ''same'' (default) or ''similar'', model, max_distance, max_hash_distance. '
'Fails (SQLSTATE): 22004 NULL image_id or tier; P0002 no such image or no embedding of the model; and those of duplicate_groups.';
