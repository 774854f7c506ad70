-- pgvision._cluster_neighbours(m, face_ids, neighbours, max_distance, ef_search) -> bigint
--
-- Purpose: the neighbourhoods of a batch of faces in one statement, from the model's ANN
--   index: for each face of face_ids (with an embedding of model m), its `neighbours`
--   nearest faces of the same model (itself and ignored faces left out) whose distance is
--   at most max_distance, appended to pg_temp.pv_edges (a, b, d) as directed edges
--   a -> b. One LATERAL top-k per face over the model's HNSW (or IVFFlat) index (the
--   literal model_id and vector(D) / halfvec(D) cast of its partial expression index, as
--   _nearest.v3), then the distance cut: never all pairs. Cost per face ~ one index walk
--   (O(log N) for HNSW), so a full pass over N faces is about N log N.
-- Arguments:
--   m             the face model (pgvision.models row).
--   face_ids      the batch (bigint[]); faces without an embedding of m are skipped.
--   neighbours    k, neighbours asked per face, 1..1000.
--   max_distance  distance cut in the model's metric (dlib: L2; facenet: cosine distance,
--                 0 = same, 2 = opposite).
--   ef_search     HNSW candidate list, raised to neighbours + 1 when smaller; restored after.
-- Returns: the number of edges appended. The caller creates pg_temp.pv_edges.
-- Settings: enable_sort off during the statement (the index walk whatever the statistics,
--   as _nearest.v3), hnsw.ef_search / ivfflat.probes as above; both restored.
CREATE OR REPLACE FUNCTION pgvision._cluster_neighbours(
    m pgvision.models,
    face_ids bigint[],
    neighbours integer,
    max_distance real,
    ef_search integer DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $fn$
DECLARE
    typ text := CASE WHEN m.dims > 2000 OR m.quantization = 'halfvec' THEN '@extschema:vector@.halfvec'
                     ELSE '@extschema:vector@.vector' END;
    op text := CASE m.metric WHEN 'cosine' THEN 'OPERATOR(@extschema:vector@.<=>)' WHEN 'l2' THEN 'OPERATOR(@extschema:vector@.<->)'
                             ELSE 'OPERATOR(@extschema:vector@.<#>)' END;
    old_ef text := current_setting('hnsw.ef_search', true);
    old_probes text := current_setting('ivfflat.probes', true);
    old_sort text := current_setting('enable_sort');
    n bigint;
BEGIN
    PERFORM set_config('hnsw.ef_search', least(1000, greatest(coalesce(ef_search, m.ef_search), neighbours + 1))::text, true);
    IF m.probes IS NOT NULL THEN
        PERFORM set_config('ivfflat.probes', m.probes::text, true);
    END IF;
    PERFORM set_config('enable_sort', 'off', true);
    -- Built from integers (model_id, dims) and fixed keywords only.
    EXECUTE format(
        'INSERT INTO pg_temp.pv_edges (a, b, d) '
        'SELECT s.face_id, n.face_id, n.d '
        'FROM (SELECT e.face_id, e.embedding FROM pgvision.face_embeddings e '
        '      WHERE e.model_id = %1$s AND e.face_id = ANY ($1)) s '
        'CROSS JOIN LATERAL ( '
        '    SELECT e2.face_id, (e2.embedding::%2$s(%3$s) %4$s s.embedding::%2$s(%3$s))::float8 AS d '
        '    FROM pgvision.face_embeddings e2 WHERE e2.model_id = %1$s '
        '    ORDER BY e2.embedding::%2$s(%3$s) %4$s s.embedding::%2$s(%3$s) LIMIT $2) n '
        'WHERE n.face_id <> s.face_id AND n.d <= $3 '
        '  AND NOT (SELECT f.ignored FROM pgvision.faces f WHERE f.face_id = n.face_id)',
        m.model_id, typ, m.dims, op)
        USING face_ids, neighbours + 1, max_distance::float8;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('enable_sort', old_sort, true);
    PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
    PERFORM set_config('ivfflat.probes', coalesce(old_probes, '1'), true);
    RETURN n;
END
$fn$;

COMMENT ON FUNCTION pgvision._cluster_neighbours(pgvision.models, bigint[], integer, real, integer) IS
'Internal: appends to pg_temp.pv_edges the top-k neighbours within max_distance of each face of a batch, one LATERAL ANN statement (clustering).';
