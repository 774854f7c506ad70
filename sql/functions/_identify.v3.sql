-- pgvision._identify(m, query, threshold, candidates, min_margin, ef_search, exclude_face_id)
--   -> TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
--             margin double precision, is_match boolean)
-- v3 (issue 8): pgvector's objects schema-qualified, search_path pg_catalog, pgvision, pg_temp;
--   threshold / min_margin must be finite and >= 0 (22023), and a NaN distance or margin
--   never matches (identity fails closed).
--
-- Purpose: the decision rule shared by identify and identify_face.
-- Rule (v2, "gallery template + nearest face, then margin"):
--   1. Candidate identities: the owners of the gallery faces (faces with an identity)
--      nearest to the probe, by the model's ANN index (20 faces per candidate asked for,
--      at most 1,000).
--   2. Each candidate's distance = the smaller of
--        a. the distance to its nearest gallery face (v1's rule), and
--        b. the distance to its template: the mean of all its gallery embeddings
--           (pgvector avg(vector)); a mean of several photos cancels pose, light and
--           expression noise, so it sits nearer to a new photo of the same person than
--           most single photos do, while a stranger gains little from it.
--      (b) lets the whole gallery vote; (a) keeps one very close photo decisive for a
--      person whose photos form two looks (glasses / no glasses), where the mean of the
--      two looks is close to neither.
--   3. Identities ranked by that distance; margin = next identity's distance minus this
--      one's (NULL when no other identity was found).
--   4. Only the best identity can match: distance <= threshold AND margin >= min_margin.
--      A probe between two people is unknown rather than a coin toss.
--   Measured on LFW (40 people x 20 photos, every second person enrolled with 5 photos,
--   dlib): TPIR at FPIR 0.02 went from 0.977 (v1, nearest face) to 0.990; see docs/faces.md.
--   The threshold must be calibrated for this distance (pgvision calibrate uses the same
--   rule, leave-one-out over the gallery), not taken from face-to-face pair studies.
-- threshold and min_margin are distances in the model's metric (dlib: L2; facenet: cosine
-- distance, 0 = same direction, 2 = opposite).
-- identify_face excludes the probe face from the nearest faces and from its identity's
-- template (leave-one-out).
CREATE OR REPLACE FUNCTION pgvision._identify(
    m pgvision.models,
    query @extschema:vector@.vector,
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
    -- Fail closed: PostgreSQL orders NaN above every number, so d <= 'NaN' is TRUE and a
    -- NaN threshold would match anyone; Infinity would too.
    IF thr IS NOT NULL AND NOT (thr >= 0 AND thr < 'Infinity'::real) THEN
        RAISE EXCEPTION 'threshold must be a finite distance >= 0, got %: pass threshold => a distance such as 0.6, or run pgvision calibrate --model %',
            thr, m.name
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF mm IS NULL OR NOT (mm >= 0 AND mm < 'Infinity'::real) THEN
        RAISE EXCEPTION 'min_margin must be a finite distance >= 0, got %: pass min_margin => 0 or a small gap such as 0.05',
            coalesce(mm::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF thr IS NULL THEN
        RAISE EXCEPTION 'model % has no identity threshold: pass threshold => a distance, or run pgvision calibrate --model %',
            quote_literal(m.name), m.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN QUERY
        WITH hits AS (
            SELECT f.identity_id, min(n.distance) AS nearest
            FROM pgvision._nearest(m, query, least(1000, candidates * 20), exclude_id => exclude_face_id,
                                   enrolled_only => true, ef_search => ef_search) n
            JOIN pgvision.faces f ON f.face_id = n.item_id
            GROUP BY f.identity_id
        ), templates AS (
            SELECT h.identity_id, h.nearest,
                   (SELECT @extschema:vector@.avg(e.embedding)
                    FROM pgvision.faces g
                    JOIN pgvision.face_embeddings e ON e.face_id = g.face_id AND e.model_id = m.model_id
                    WHERE g.identity_id = h.identity_id
                      AND g.face_id IS DISTINCT FROM exclude_face_id) AS template
            FROM hits h
        ), scored AS (
            SELECT t.identity_id,
                   least(t.nearest, (CASE m.metric
                                         WHEN 'cosine' THEN t.template OPERATOR(@extschema:vector@.<=>) query
                                         WHEN 'l2' THEN t.template OPERATOR(@extschema:vector@.<->) query
                                         ELSE t.template OPERATOR(@extschema:vector@.<#>) query END)::float8) AS d
            FROM templates t
        ), ranked AS (
            SELECT s.identity_id, s.d,
                   lead(s.d) OVER w - s.d AS margin,
                   row_number() OVER w AS rank
            FROM scored s
            WINDOW w AS (ORDER BY s.d, s.identity_id)
        )
        SELECT r.identity_id, i.name, r.d, pgvision._similarity(r.d, m.metric), r.margin,
               -- NaN (a NaN distance or margin) never matches: fail closed.
               r.rank = 1 AND r.d <= thr AND r.d <> 'NaN'::float8
                 AND (r.margin IS NULL OR (r.margin >= mm AND r.margin <> 'NaN'::float8))
        FROM ranked r JOIN pgvision.identities i ON i.identity_id = r.identity_id
        WHERE r.rank <= candidates
        ORDER BY r.rank;
END
$fn$;

COMMENT ON FUNCTION pgvision._identify(pgvision.models, @extschema:vector@.vector, real, integer, real, integer, bigint) IS
'Internal: gallery decision rule v2 (identity distance = min(nearest gallery face, mean of its gallery embeddings); match = best, distance <= threshold, margin >= min_margin). Use identify / identify_face.';
