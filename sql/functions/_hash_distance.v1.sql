-- pgvision._hash_distance(a_phash bit(64), a_crops bit(576), b_phash bit(64), b_crops bit(576)) -> integer
--
-- Purpose: how far apart two images' perceptual hashes are, allowing for a crop: the
--   smallest Hamming distance between the whole-image pHash of one and the whole-image
--   pHash or any of the nine 90 % crop pHashes of the other (19 comparisons; see
--   loader/pgvision/ingest/perceptual_hash.py for how the hashes are made).
-- Arguments: the images.phash and images.phash_crops of two images.
-- Metric: Hamming distance in bits, 0..64; 0 = the same hash. Re-encoding, resizing and
--   small brightness or contrast changes give 0-4; a crop of up to 10 % 0-12 (median 6);
--   the nearest different photos 10-34 (median 24) (bench/bench_duplicates.py, docs/duplicates.md).
-- Returns: the distance; NULL when any argument is NULL (an image without hashes yet).
-- Fails: 22026 (string_data_length_mismatch) when a hash has another length than bit(64) /
--   bit(576).
CREATE OR REPLACE FUNCTION pgvision._hash_distance(a_phash bit(64), a_crops bit(576), b_phash bit(64), b_crops bit(576))
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
    SELECT least(bit_count(a_phash # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 1 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 1 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 65 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 65 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 129 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 129 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 193 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 193 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 257 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 257 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 321 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 321 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 385 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 385 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 449 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 449 FOR 64)::bit(64) # b_phash),
                 bit_count(a_phash # substring(b_crops FROM 513 FOR 64)::bit(64)),
                 bit_count(substring(a_crops FROM 513 FOR 64)::bit(64) # b_phash))::integer
$fn$;

COMMENT ON FUNCTION pgvision._hash_distance(bit, bit, bit, bit) IS
'Hamming distance (bits, 0..64) between two images'' perceptual hashes allowing a crop of up to 10 %: the least of whole to whole and whole to each of the other''s nine 90 % crops. NULL when a hash is NULL.';
