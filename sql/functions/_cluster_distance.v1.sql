-- pgvision._cluster_distance(m pgvision.models) -> real
--
-- Purpose: the default max_distance of clustering for a face model, in the model's metric
--   (dlib: L2 distance; facenet: cosine distance, 0 = same direction, 2 = opposite).
-- Rule:
--   * calibrated model (a row in pgvision.calibrations): the latest calibrated threshold
--     x 1.1. The threshold is the identify decision for one probe against a gallery at
--     FPIR 0.01; a cluster link is a decision between two single photos guarded by the
--     linkage rule (shared neighbours), so it may reach further. On LFW the dlib
--     calibrations measured 0.4551 and 0.4745 (docs/faces.md): x 1.1 = 0.501 and 0.522,
--     on the plateau of the max_distance sweep (0.50-0.65: BCubed precision 0.993-0.995,
--     recall 0.979-0.986; docs/people.md), where x 1.0 would sit on its shoulder (0.4551:
--     recall 0.89).
--   * uncalibrated: a per-model constant measured on LFW (docs/people.md, the sweep):
--     dlib 0.50 (L2); facenet 0.25 (cosine distance: its published threshold 0.30 x 5/6,
--     the same ratio as dlib's 0.50 to its published 0.6); any other model: its threshold
--     (models.threshold) x 5/6.
-- Returns: a finite distance > 0 (NULL only when the model has no threshold at all).
CREATE OR REPLACE FUNCTION pgvision._cluster_distance(m pgvision.models)
RETURNS real
LANGUAGE sql STABLE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
    SELECT coalesce(
        (SELECT c.threshold * 1.1 FROM pgvision.calibrations c
         WHERE c.model_id = m.model_id ORDER BY c.created_at DESC, c.calibration_id DESC LIMIT 1),
        CASE m.name WHEN 'dlib' THEN 0.50::real WHEN 'facenet' THEN 0.25::real ELSE m.threshold * 5 / 6 END)::real
$fn$;

COMMENT ON FUNCTION pgvision._cluster_distance(pgvision.models) IS
'Internal: default clustering max_distance of a face model: latest calibrated threshold x 1.1, else dlib 0.50 / facenet 0.25 / threshold x 5/6.';
