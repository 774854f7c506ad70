-- pgvision._identify(m, query, threshold, candidates, min_margin, ef_search, exclude_face_id)
--   -> TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
--             margin double precision, is_match boolean)
--
-- Purpose: the decision rule shared by identify and identify_face. The rule is v2's
-- (see _identify.v2.sql), with v3's checks (issue 8: pgvector's objects schema-qualified;
-- threshold / min_margin finite and >= 0, else 22023; a NaN distance or margin never
-- matches): an identity's distance = the smaller of its nearest gallery
-- face's distance and the distance to the mean of its gallery embeddings (its template);
-- identities ranked by it; margin = next identity's distance minus this one's; only the
-- best identity can match (distance <= threshold AND margin >= min_margin).
-- What v4 changes (issue 13, item 3), not the rule but how it is evaluated:
--   1. Candidate depth: the owners of the max(200, 20 x candidates) (at most 1,000)
--      nearest gallery faces are the candidate identities, and the HNSW scan's ef_search
--      is at least that depth (v2: 20 x candidates = 100 faces at ef_search 100). Deeper
--      candidates are what keeps the exact rule's best identity among them when a
--      gallery holds look-alikes (families of similar people): measured with
--      bench/bench_scale.py, see docs/benchmarks.md ("Millions").
--   2. A plan that does not depend on statistics. v2 joined faces to face_embeddings to
--      average each candidate's gallery; before ANALYZE (right after a bulk load) the
--      planner took that join for a hash join over a sequential scan of face_embeddings,
--      once per candidate identity: 129 ms p50 instead of 5 ms at 30k faces (measured).
--      v4 reaches every embedding by its primary key (model_id, face_id) in a scalar
--      subquery, a unique-key lookup that no estimate turns into a scan, and each
--      identity's faces through faces_identity (identity_id = one value).
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
    c_min_depth constant integer := 200;
    thr real := coalesce(threshold, m.threshold);
    mm real := coalesce(min_margin, m.min_margin);
    depth integer;
BEGIN
    PERFORM pgvision._check_query(query, m, candidates, ef_search);
    IF thr IS NULL THEN
        RAISE EXCEPTION 'model % has no identity threshold: pass threshold => a distance, or run pgvision calibrate --model %',
            quote_literal(m.name), m.name
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- Fail closed (v3, issue 8): PostgreSQL orders NaN above every number, so d <= 'NaN'
    -- is TRUE and a NaN threshold would match anyone; Infinity would too.
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
    depth := least(1000, greatest(candidates * 20, c_min_depth));
    RETURN QUERY
        WITH hits AS MATERIALIZED (
            SELECT (SELECT f.identity_id FROM pgvision.faces f WHERE f.face_id = n.item_id) AS identity_id,
                   n.distance
            FROM pgvision._nearest(m, query, depth, exclude_id => exclude_face_id, enrolled_only => true,
                                   ef_search => least(1000, greatest(coalesce(ef_search, m.ef_search), depth))) n
        ), owners AS MATERIALIZED (
            SELECT h.identity_id, min(h.distance) AS nearest
            FROM hits h
            WHERE h.identity_id IS NOT NULL
            GROUP BY h.identity_id
        ), scored AS MATERIALIZED (
            SELECT o.identity_id,
                   least(o.nearest,
                         (SELECT (CASE m.metric
                                      WHEN 'cosine' THEN s.template OPERATOR(@extschema:vector@.<=>) query
                                      WHEN 'l2' THEN s.template OPERATOR(@extschema:vector@.<->) query
                                      ELSE s.template OPERATOR(@extschema:vector@.<#>) query END)::float8
                          FROM (SELECT @extschema:vector@.avg(
                                           (SELECT e.embedding FROM pgvision.face_embeddings e
                                            WHERE e.model_id = m.model_id AND e.face_id = g.face_id)) AS template
                                FROM pgvision.faces g
                                WHERE g.identity_id = o.identity_id
                                  AND g.face_id IS DISTINCT FROM exclude_face_id) s)) AS d
            FROM owners o
        ), ranked AS (
            SELECT s.identity_id, s.d,
                   lead(s.d) OVER w - s.d AS margin,
                   row_number() OVER w AS rank
            FROM scored s
            WINDOW w AS (ORDER BY s.d, s.identity_id)
        )
        SELECT r.identity_id, i.name, r.d, pgvision._similarity(r.d, m.metric), r.margin,
               -- NaN (a NaN distance or margin) never matches: fail closed (v3).
               r.rank = 1 AND r.d <= thr AND r.d <> 'NaN'::float8
                 AND (r.margin IS NULL OR (r.margin >= mm AND r.margin <> 'NaN'::float8))
        FROM ranked r JOIN pgvision.identities i ON i.identity_id = r.identity_id
        WHERE r.rank <= candidates
        ORDER BY r.rank;
END
$fn$;

COMMENT ON FUNCTION pgvision._identify(pgvision.models, @extschema:vector@.vector, real, integer, real, integer, bigint) IS
'Internal: gallery decision rule v2 (identity distance = min(nearest gallery face, mean of its gallery embeddings); match = best, distance <= threshold, margin >= min_margin), evaluated over the owners of the 200+ nearest gallery faces by primary-key lookups (v4: plan independent of statistics). Use identify / identify_face.';
