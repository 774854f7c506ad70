-- pgvision.cluster_faces(model, mode, max_distance, min_faces, neighbours, batch_size)
--   -> pgvision.cluster_passes
--
-- Purpose: cluster a face model's faces into people in one call: cluster_start, then
--   cluster_step until the pass is done, all in the caller's transaction (atomic: all or
--   nothing). For progress and batch-by-batch commits (a kill leaves whole batches and a
--   rerun goes on), call cluster_start and cluster_step from the client as `pgvision people
--   cluster` does.
-- Arguments: as cluster_start (model, mode 'incremental' | 'full', max_distance, min_faces,
--   neighbours) and cluster_step (batch_size).
-- Returns: the finished pass row: assigned (faces given a person), created (new people),
--   unassigned (faces left for a later pass).
-- Fails (SQLSTATE): as cluster_start and cluster_step.
-- Rights: SECURITY INVOKER; EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.cluster_faces(
    model text DEFAULT NULL,
    mode text DEFAULT 'incremental',
    max_distance real DEFAULT NULL,
    min_faces integer DEFAULT 3,
    neighbours integer DEFAULT 16,
    batch_size integer DEFAULT 1000)
RETURNS pgvision.cluster_passes
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    p pgvision.cluster_passes := pgvision.cluster_start(model, mode, max_distance, min_faces, neighbours);
BEGIN
    WHILE p.phase NOT IN ('done', 'abandoned') LOOP
        p := pgvision.cluster_step(p.pass_id, batch_size);
    END LOOP;
    RETURN p;
END
$fn$;

COMMENT ON FUNCTION pgvision.cluster_faces(text, text, real, integer, integer, integer) IS
'Cluster a face model''s faces into people in one call (one transaction): mode incremental (default) or full; returns the finished pass (assigned, created, unassigned). '
'Fails (SQLSTATE): 22004 NULL mode; 22023 bad mode, max_distance, min_faces, neighbours or batch_size, an image model; 42704 unknown model; 55000 no face model loaded yet.';
