-- pgvision.identify(query, model, threshold, candidates, min_margin, ef_search, collection)
--   -> TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
--             margin double precision, is_match boolean)
-- v4: collections. `collection` restricts the gallery to that collection's identities (NULL =
--   every identity the caller may see); runs with the caller's rights, so row-level security
--   hides other collections' identities, faces and templates: a probe is never matched to
--   another collection's person. Scoped calls search faces and templates by bounded iterative
--   scans (_identify.v6, _nearest.v5).
-- v3 (issue 8): pgvector's types, operators and functions schema-qualified
--   (@extschema:vector@), search_path pg_catalog, pgvision, pg_temp: objects other roles
--   create in pgvector's schema can no longer shadow a call. Fails closed (_identify.v3):
--   threshold / min_margin not finite and >= 0 raise 22023; a NaN distance never matches.
--
-- Purpose: "this face is person X with similarity s, or unknown": the enrolled identities
-- nearest to a face embedding, best first, with the match decision on the best one.
-- Arguments:
--   query       face embedding (128-d for dlib, 512-d for facenet).
--   model       face model name; NULL = the default face model.
--   threshold   largest distance that can match, in the model's metric; NULL = the model's
--               (calibrated with pgvision calibrate, else the published default: dlib L2 0.6).
--   candidates  identities returned, 1..1000 (default 5).
--   min_margin  smallest gap between the best and the second-best identity's distance for
--               a match; NULL = the model's (default 0).
--   ef_search   HNSW candidate list; NULL = the model's.
--   collection  only identities of this collection (pgvision.collections.name); NULL = every
--               identity the caller may see (row-level security).
-- Returns: one row per candidate identity; distance = the smaller of its nearest gallery
--   face's distance and the distance to the mean of its gallery embeddings (rule v2, see
--   _identify.v2.sql); margin = gap to the next identity (NULL if none); is_match true on
--   at most one row (the first).
--   No row with is_match means unknown.
-- Fails: 22023 bad candidates / dimension, threshold or min_margin not a finite distance >= 0,
--   zero (cosine) or overflowing query; 22004 NULL query; 42704 unknown model, or a collection
--   that does not exist or is not granted to the caller;
--   55000 no face model, or the model has no threshold.
CREATE OR REPLACE FUNCTION pgvision.identify(
    query @extschema:vector@.vector,
    model text DEFAULT NULL,
    threshold real DEFAULT NULL,
    candidates integer DEFAULT 5,
    min_margin real DEFAULT NULL,
    ef_search integer DEFAULT NULL,
    collection text DEFAULT NULL)
RETURNS TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
               margin double precision, is_match boolean)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $fn$
BEGIN
    RETURN QUERY SELECT * FROM pgvision._identify(pgvision._resolve_model(model, 'face'), query,
                                                  threshold, candidates, min_margin, ef_search,
                                                  collection_id => pgvision._collection_id(collection));
END
$fn$;

COMMENT ON FUNCTION pgvision.identify(@extschema:vector@.vector, text, real, integer, real, integer, text) IS
'Identify a face embedding against the enrolled gallery: (identity_id, name, distance, similarity, margin, is_match), best first. '
'Identity distance = min(distance to its nearest gallery face, distance to the mean of its gallery embeddings): the mean of several photos of a person is a less noisy template than any one photo. '
'Match = best identity with distance <= threshold (the model''s, set by pgvision calibrate with this same rule) and margin to the next identity >= min_margin. '
'No is_match row = unknown person. collection: only that collection''s identities (NULL = every collection you may see). '
'Fails (SQLSTATE): 22004 NULL query or candidates; 22023 candidates or ef_search outside 1..1000, query of another dimension than the model''s, '
'zero (cosine) or overflowing query, threshold or min_margin not a finite number >= 0, an image model named, or several face models and none the default; '
'42704 unknown model, or a collection that does not exist or is not granted to you; 55000 no face model loaded yet, or the model has no threshold '
'(pass threshold => or run pgvision calibrate).';
