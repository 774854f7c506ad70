-- pgvision.unassigned_faces: faces in no person and not ignored (what clustering has not
-- placed yet, or could not: deferred), for BI tools.
--   face_id, image_id, uri   the face and its photo.
--   box                      ARRAY[left, top, right, bottom], pixels of the upright image.
--   detector_score           the detector's score.
--   deferred                 true when a clustering pass tried it and left it (for any model).
--   created_at               when the face was stored.
-- security_invoker: the caller's grants and row-level security apply to the tables read.
CREATE OR REPLACE VIEW pgvision.unassigned_faces WITH (security_invoker = true) AS
SELECT f.face_id, f.image_id, im.uri, ARRAY[f.box_left, f.box_top, f.box_right, f.box_bottom] AS box,
       f.detector_score,
       EXISTS (SELECT 1 FROM pgvision.cluster_deferred d WHERE d.face_id = f.face_id) AS deferred,
       f.created_at
FROM pgvision.faces f JOIN pgvision.images im ON im.image_id = f.image_id
WHERE f.identity_id IS NULL AND NOT f.ignored;

COMMENT ON VIEW pgvision.unassigned_faces IS
'Faces in no person and not ignored; deferred = a clustering pass tried them and left them unassigned.';
