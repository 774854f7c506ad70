-- pgvision.identify_face(face_id, model, threshold, candidates, min_margin, ef_search, collection)
--   -> TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
--             margin double precision, is_match boolean)
-- v4: collections. `collection` restricts the gallery to that collection's identities (NULL =
--   every identity the caller may see); runs with the caller's rights, so row-level security
--   hides other collections' identities, faces and templates: a probe is never matched to
--   another collection's person, and a face of another collection is answered as a missing
--   one (P0002, the same text). Scoped calls search faces and templates by bounded iterative
--   scans (_identify.v6, _nearest.v5).
-- v3 (issue 8): pgvector's types, operators and functions schema-qualified
--   (@extschema:vector@), search_path pg_catalog, pgvision, pg_temp: objects other roles
--   create in pgvector's schema can no longer shadow a call. Fails closed (_identify.v3):
--   threshold / min_margin not finite and >= 0 raise 22023; a NaN distance never matches.
--
-- Purpose: identify (see identify.v2.sql) for a face already stored, that face itself
-- excluded from the gallery (from the nearest faces and from its identity's mean:
-- leave-one-out). What a BI tool calls: SELECT * FROM pgvision.identify_face(7).
-- Arguments: face_id = pgvision.faces.face_id; the rest as identify.
-- Fails: 22004 NULL face_id; P0002 no such face, or no embedding of that model for it;
--   otherwise as identify.
CREATE OR REPLACE FUNCTION pgvision.identify_face(
    face_id bigint,
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
DECLARE
    m pgvision.models := pgvision._resolve_model(model, 'face');
    probe @extschema:vector@.vector;
    cid integer := pgvision._collection_id(collection);
BEGIN
    IF identify_face.face_id IS NULL THEN
        RAISE EXCEPTION 'face_id must not be NULL: pass a face_id from pgvision.faces'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT e.embedding INTO probe FROM pgvision.face_embeddings e
    WHERE e.model_id = m.model_id AND e.face_id = identify_face.face_id;
    IF NOT FOUND THEN
        IF NOT EXISTS (SELECT 1 FROM pgvision.faces f WHERE f.face_id = identify_face.face_id) THEN
            RAISE EXCEPTION 'no face with face_id %', identify_face.face_id
                USING ERRCODE = 'no_data_found', HINT = 'pick one from pgvision.faces';
        END IF;
        RAISE EXCEPTION 'face % has no % embedding: load it with pgvision faces load --model %',
            identify_face.face_id, quote_literal(m.name), m.name
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM pgvision._identify(m, probe, threshold, candidates, min_margin, ef_search,
                                                  exclude_face_id => identify_face.face_id, collection_id => cid);
END
$fn$;

COMMENT ON FUNCTION pgvision.identify_face(bigint, text, real, integer, real, integer, text) IS
'Identify a stored face (itself excluded, leave-one-out) against the enrolled gallery: (identity_id, name, distance, similarity, margin, is_match). '
'Same rule as identify: identity distance = min(nearest gallery face, mean of its gallery embeddings); match = best, distance <= threshold, margin >= min_margin. collection: only that collection''s identities (NULL = every collection you may see). '
'Fails (SQLSTATE): 22004 NULL face_id or candidates; 22023 candidates or ef_search outside 1..1000, threshold or min_margin not a finite number >= 0, '
'an image model named, or several face models and none the default; P0002 no such face, or no embedding of that model for it; '
'42704 unknown model, or a collection that does not exist or is not granted to you; 55000 no face model loaded yet, or the model has no threshold.';
