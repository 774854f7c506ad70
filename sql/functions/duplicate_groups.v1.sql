-- pgvision.duplicate_groups(tier, model, max_distance, max_hash_distance) -> SETOF pgvision.duplicate_hit
--
-- Purpose: every group of duplicate images, for review or clean-up.
--   tier 'same':    the same picture stored more than once: re-encoded (JPEG quality
--                   30-95, PNG <-> JPEG), resized (25-100 %), cropped by up to 10 %, small
--                   brightness or contrast changes, metadata stripped. Hash AND embedding
--                   agree: embedding distance <= max_distance and perceptual-hash distance
--                   (pgvision._hash_distance) <= max_hash_distance. Safe to delete all but
--                   the keeper.
--   tier 'similar': near-identical shots (a burst, the same scene a moment later), and the
--                   same pictures: embedding distance <= max_distance only. For review.
--   A group is a connected component of the duplicate pairs; pairs come from the model's ANN
--   index and equal pHashes (B-tree images_phash) (pgvision._duplicate_pairs), never all pairs.
-- Arguments:
--   tier               'same' (default) or 'similar'.
--   model              image model name; NULL = the default image model.
--   max_distance       embedding distance in the model's metric; NULL = the tier's default,
--                      measured for efficientnet-lite0 features (cosine distance: same 0.34,
--                      similar 0.11; bench/bench_duplicates.py --calibrate, docs/duplicates.md).
--                      Models with another metric must pass it.
--   max_hash_distance  tier 'same': Hamming bits 0..64 (NULL = 12, measured as above).
-- Returns: pgvision.duplicate_hit rows (see pgvision._duplicate_rows): group_id (the
--   keeper's image_id), image_id, uri, label, is_keeper, distance and hash_distance to the
--   keeper, width, height; groups of two or more images only, by group_id, keeper first.
-- Fails (SQLSTATE): 22004 NULL tier; 22023 tier not 'same' or 'similar', max_distance not a
--   finite number >= 0, max_hash_distance outside 0..64, a model of another metric than
--   cosine without max_distance, a face model named, or several image models and none the
--   default; 42704 unknown model; 55000 no image model loaded yet.
-- Rights: SECURITY INVOKER: the caller's privileges and row-level security apply.
CREATE OR REPLACE FUNCTION pgvision.duplicate_groups(
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
    SELECT * INTO lim FROM pgvision._duplicate_limits(m, tier, max_distance, max_hash_distance);
    SELECT array_agg(p.a_id) AS a, array_agg(p.b_id) AS b INTO pairs
    FROM pgvision._duplicate_pairs(m, tier, lim.max_distance_out, lim.max_hash_distance_out, 20) p;
    RETURN QUERY SELECT * FROM pgvision._duplicate_rows(m, pairs.a, pairs.b);
END
$fn$;

COMMENT ON FUNCTION pgvision.duplicate_groups(text, text, double precision, integer) IS
'Groups of duplicate images: (group_id = keeper image_id, image_id, uri, label, is_keeper, distance, hash_distance, width, height). '
'Args: tier ''same'' (same picture: hash and embedding agree; default) or ''similar'' (near-identical shots: embedding only), '
'model (default image model), max_distance (embedding distance; NULL = the tier''s measured default), max_hash_distance (bits, tier same; NULL = 12). '
'Keeper: most pixels, then oldest. Fails (SQLSTATE): 22004 NULL tier; 22023 bad tier, max_distance or max_hash_distance, '
'a non-cosine model without max_distance, a face model, or several image models and none the default; 42704 unknown model; 55000 no image model loaded yet.';
