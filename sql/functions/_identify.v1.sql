-- pgvision._identify(m, query, threshold, candidates, min_margin, ef_search, exclude_face_id)
--   -> TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
--             margin double precision, is_match boolean)
--
-- Purpose: the decision rule shared by identify and identify_face.
-- Rule (v1): the gallery faces (faces with an identity) nearest to the probe are fetched
--   (20 per candidate asked for, at most 1,000); an identity's distance is that of its
--   nearest gallery face; identities are ranked by it; margin = next identity's distance
--   minus this one's (NULL when no other identity was found). Only the best identity can
--   match, and only when distance <= threshold AND margin >= min_margin: a probe that sits
--   between two people is unknown rather than a coin toss (Immich users report siblings
--   merged; DESIGN.md).
-- threshold and min_margin are distances in the model's metric (dlib: L2; facenet: cosine).
CREATE OR REPLACE FUNCTION pgvision._identify(
    m pgvision.models,
    query vector,
    threshold real,
    candidates integer,
    min_margin real,
    ef_search integer,
    exclude_face_id bigint DEFAULT NULL)
RETURNS TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
               margin double precision, is_match boolean)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_column
DECLARE
    thr real := coalesce(threshold, m.threshold);
    mm real := coalesce(min_margin, m.min_margin);
BEGIN
    PERFORM pgvision._check_query(query, m, candidates, ef_search);
    IF thr IS NULL THEN
        RAISE EXCEPTION 'model % has no identity threshold: pass threshold => a distance, or run pgvision calibrate --model %',
            quote_literal(m.name), m.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN QUERY
        WITH hits AS (
            SELECT f.identity_id, min(n.distance) AS d
            FROM pgvision._nearest(m, query, least(1000, candidates * 20), exclude_id => exclude_face_id,
                                   enrolled_only => true, ef_search => ef_search) n
            JOIN pgvision.faces f ON f.face_id = n.item_id
            GROUP BY f.identity_id
        ), ranked AS (
            SELECT h.identity_id, h.d,
                   lead(h.d) OVER w - h.d AS margin,
                   row_number() OVER w AS rank
            FROM hits h
            WINDOW w AS (ORDER BY h.d, h.identity_id)
        )
        SELECT r.identity_id, i.name, r.d, pgvision._similarity(r.d, m.metric), r.margin,
               r.rank = 1 AND r.d <= thr AND coalesce(r.margin >= mm, true)
        FROM ranked r JOIN pgvision.identities i ON i.identity_id = r.identity_id
        WHERE r.rank <= candidates
        ORDER BY r.rank;
END
$fn$;

COMMENT ON FUNCTION pgvision._identify(pgvision.models, vector, real, integer, real, integer, bigint) IS
'Internal: gallery decision rule (nearest face per identity, threshold and margin). Use identify / identify_face.';
