-- pgvision._identify(m, query, threshold, candidates, min_margin, ef_search, exclude_face_id, collection_id)
--   -> TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
--             margin double precision, is_match boolean)
-- v6: collections. collection_id (NULL = every identity the caller may see) restricts the
--   gallery to one collection; faces come from _nearest.v5 (scoped: its filtered path), and
--   the nearest templates, for a caller under row-level security or a named collection, by a
--   bounded iterative scan of the template index (hnsw.iterative_scan relaxed_order,
--   hnsw.max_scan_tuples 20,000) with the collection as a literal: the policy's condition
--   applies after the index scan, and without it a collection's templates would be cut short.
--   The rule is unchanged.
--
-- Purpose: the decision rule shared by identify and identify_face, unchanged since v2 (with
-- v3's fail-closed checks): an identity's distance = the smaller of its nearest gallery
-- face's distance and the distance to the mean of its gallery embeddings (its template);
-- identities ranked by it; margin = next identity's distance minus this one's; only the
-- best identity can match (distance <= threshold AND margin >= min_margin; threshold and
-- min_margin finite and >= 0, else 22023; a NaN distance or margin never matches).
-- threshold and min_margin are distances in the model's metric (dlib: L2; facenet: cosine
-- distance, 0 = same direction, 2 = opposite).
-- What v5 changes (issue 13, item 3), not the rule but where candidates come from:
--   v4 took the owners of the max(200, 20 x candidates) nearest gallery faces. At 1M faces
--   with look-alikes it agreed with the exact rule on 0.960 of the probes: in every miss
--   the exact winner's nearest photo is the nearest photo of the whole gallery and its
--   template the nearest template (numpy, bench/bench_scale.py's generator), so the
--   misses were the HNSW walk over 1M tightly clustered photos not reaching them, not a
--   too shallow depth. v5's candidates = the owners of those nearest faces UNION the
--   identities of the max(20, 2 x candidates) + 1 nearest templates, searched in
--   pgvision.identity_templates (the mean of each identity's gallery per face model, kept
--   in step by the trigger _sync_templates, with its own HNSW index per model, one row per
--   person instead of ~10 near-duplicate photos: a much easier graph).
--   Why this holds by construction (exact indexes): if the best identity's distance is its
--   template's, no other template is nearer (that identity would be better), so it is the
--   nearest template; if it is a photo's, that photo is the nearest gallery face. Likewise
--   the r-th identity's template is among the r nearest templates. The +1 is identify_face's
--   own identity, whose stored template holds the probe.
--   Scores: a candidate's nearest photo is the nearest of its faces among the hits, or, for
--   an identity found through its template only, the minimum over its gallery (primary-key
--   lookups); its template distance is read from identity_templates by primary key (v4
--   averaged every candidate's gallery on every call: most of its 1M-face p99), except for
--   identify_face's own identity, whose mean is recomputed without the probe (leave-one-out).
--   Plans stay independent of statistics as in v4 (_nearest.v3 with sorting off for the
--   faces; the template scan with enable_sort off; key lookups everywhere else).
-- identify_face excludes the probe face from the nearest faces and from its identity's
-- template (leave-one-out).
CREATE OR REPLACE FUNCTION pgvision._identify(
    m pgvision.models,
    query @extschema:vector@.vector,
    threshold real,
    candidates integer,
    min_margin real,
    ef_search integer,
    exclude_face_id bigint DEFAULT NULL,
    collection_id integer DEFAULT NULL)
RETURNS TABLE (identity_id bigint, name text, distance double precision, similarity double precision,
               margin double precision, is_match boolean)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_column
DECLARE
    c_min_depth constant integer := 200;
    c_min_templates constant integer := 20;
    thr real := coalesce(threshold, m.threshold);
    mm real := coalesce(min_margin, m.min_margin);
    depth integer;
    n_templates integer;
    typ text := CASE WHEN m.dims > 2000 THEN '@extschema:vector@.halfvec' ELSE '@extschema:vector@.vector' END;
    op text := CASE m.metric WHEN 'cosine' THEN 'OPERATOR(@extschema:vector@.<=>)' WHEN 'l2' THEN 'OPERATOR(@extschema:vector@.<->)'
                             ELSE 'OPERATOR(@extschema:vector@.<#>)' END;
    t_ids bigint[];
    probe_identity bigint;
    old_ef text;
    old_sort text;
    old_iter text;
    old_bound text;
    cid integer := collection_id;
    scoped boolean;
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
    n_templates := least(1000, greatest(candidates * 2, c_min_templates) + 1);
    IF exclude_face_id IS NOT NULL THEN
        probe_identity := (SELECT f.identity_id FROM pgvision.faces f WHERE f.face_id = exclude_face_id);
    END IF;
    -- The nearest templates, by the model's template index (literal model_id and vector(D):
    -- the partial expression index; sorting off: the index walk whatever the statistics).
    scoped := cid IS NOT NULL OR row_security_active('pgvision.identity_templates'::regclass);
    old_ef := current_setting('hnsw.ef_search', true);
    old_sort := current_setting('enable_sort');
    old_iter := current_setting('hnsw.iterative_scan', true);
    old_bound := current_setting('hnsw.max_scan_tuples', true);
    IF scoped THEN
        PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
        PERFORM set_config('hnsw.max_scan_tuples', '20000', true);
    END IF;
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(coalesce(ef_search, m.ef_search), 5 * n_templates))::text, true);
    PERFORM set_config('enable_sort', 'off', true);
    EXECUTE format('SELECT array_agg(s.identity_id) FROM (SELECT t.identity_id FROM pgvision.identity_templates t '
                   'WHERE t.model_id = %1$s%6$s ORDER BY t.template::%2$s(%3$s) %4$s $1::%2$s(%3$s) LIMIT %5$s) s',
                   m.model_id, typ, m.dims, op, n_templates,
                   CASE WHEN cid IS NOT NULL THEN format(' AND t.collection_id = %s', cid) ELSE '' END)
        INTO t_ids USING query;
    PERFORM set_config('enable_sort', old_sort, true);
    PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
    IF scoped THEN
        PERFORM set_config('hnsw.iterative_scan', coalesce(old_iter, 'off'), true);
        PERFORM set_config('hnsw.max_scan_tuples', coalesce(old_bound, '20000'), true);
    END IF;
    RETURN QUERY
        WITH hits AS MATERIALIZED (
            SELECT (SELECT f.identity_id FROM pgvision.faces f WHERE f.face_id = n.item_id) AS identity_id,
                   n.distance
            FROM pgvision._nearest(m, query, depth, exclude_id => exclude_face_id, enrolled_only => true, collection_id => cid,
                                   ef_search => least(1000, greatest(coalesce(ef_search, m.ef_search), depth))) n
        ), owners AS MATERIALIZED (
            SELECT h.identity_id, min(h.distance) AS nearest
            FROM hits h
            WHERE h.identity_id IS NOT NULL
            GROUP BY h.identity_id
        ), cands AS MATERIALIZED (
            SELECT c.identity_id, (SELECT o.nearest FROM owners o WHERE o.identity_id = c.identity_id) AS nearest
            FROM (SELECT o.identity_id FROM owners o UNION SELECT x FROM unnest(t_ids) x) c
        ), scored AS MATERIALIZED (
            SELECT c.identity_id,
                   least(
                       -- its nearest photo: among the hits, or over its gallery when only its
                       -- template brought it here
                       coalesce(c.nearest,
                                (SELECT min((SELECT (CASE m.metric
                                                         WHEN 'cosine' THEN e.embedding OPERATOR(@extschema:vector@.<=>) query
                                                         WHEN 'l2' THEN e.embedding OPERATOR(@extschema:vector@.<->) query
                                                         ELSE e.embedding OPERATOR(@extschema:vector@.<#>) query END)::float8
                                             FROM pgvision.face_embeddings e
                                             WHERE e.model_id = m.model_id AND e.face_id = g.face_id))
                                 FROM pgvision.faces g
                                 WHERE g.identity_id = c.identity_id
                                   AND g.face_id IS DISTINCT FROM exclude_face_id)),
                       -- its template: stored, or without the probe for the probe's own identity
                       (SELECT (CASE m.metric
                                    WHEN 'cosine' THEN s.template OPERATOR(@extschema:vector@.<=>) query
                                    WHEN 'l2' THEN s.template OPERATOR(@extschema:vector@.<->) query
                                    ELSE s.template OPERATOR(@extschema:vector@.<#>) query END)::float8
                        FROM (SELECT CASE WHEN c.identity_id IS DISTINCT FROM probe_identity THEN
                                         (SELECT t.template FROM pgvision.identity_templates t
                                          WHERE t.identity_id = c.identity_id AND t.model_id = m.model_id)
                                     ELSE
                                         (SELECT @extschema:vector@.avg(
                                                     (SELECT e.embedding FROM pgvision.face_embeddings e
                                                      WHERE e.model_id = m.model_id AND e.face_id = g.face_id))
                                          FROM pgvision.faces g
                                          WHERE g.identity_id = c.identity_id
                                            AND g.face_id IS DISTINCT FROM exclude_face_id)
                                     END AS template) s)) AS d
            FROM cands c
        ), ranked AS (
            SELECT s.identity_id, s.d,
                   lead(s.d) OVER w - s.d AS margin,
                   row_number() OVER w AS rank
            FROM scored s
            WHERE s.d IS NOT NULL
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

COMMENT ON FUNCTION pgvision._identify(pgvision.models, @extschema:vector@.vector, real, integer, real, integer, bigint, integer) IS
'Internal: gallery decision rule v2 (identity distance = min(nearest gallery face, mean of its gallery embeddings); match = best, distance <= threshold, margin >= min_margin), evaluated over the owners of the 200+ nearest gallery faces and of the nearest identity templates (v5: identity_templates, HNSW), plan independent of statistics. Use identify / identify_face.';
