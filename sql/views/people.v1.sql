-- pgvision.people: one row per person (an identity: named, or unnamed from clustering or a
-- hand split / move), for BI tools and review pages.
--   identity_id   the person (identify / identify_face return it; name may be NULL).
--   name          NULL for an unnamed person.
--   faces         faces in the person; photos: distinct images; hand_faces: placed by hand.
--   cover_face_id, cover_uri, cover_box  the face to show for the person: a hand-placed one
--                 first, then the largest box, then the smallest face_id; cover_box is
--                 ARRAY[left, top, right, bottom] in pixels of the upright image.
--   created_at    when the identity was created.
-- security_invoker: the caller's grants and row-level security apply to the tables read.
CREATE OR REPLACE VIEW pgvision.people WITH (security_invoker = true) AS
SELECT i.identity_id, i.name, s.faces, s.photos, s.hand_faces,
       c.face_id AS cover_face_id, im.uri AS cover_uri,
       CASE WHEN c.face_id IS NOT NULL THEN ARRAY[c.box_left, c.box_top, c.box_right, c.box_bottom] END AS cover_box,
       i.created_at
FROM pgvision.identities i
CROSS JOIN LATERAL (SELECT count(*) AS faces, count(DISTINCT f.image_id) AS photos,
                           count(*) FILTER (WHERE f.assigned_by = 'hand') AS hand_faces
                    FROM pgvision.faces f WHERE f.identity_id = i.identity_id) s
LEFT JOIN LATERAL (SELECT f.face_id, f.image_id, f.box_left, f.box_top, f.box_right, f.box_bottom
                   FROM pgvision.faces f WHERE f.identity_id = i.identity_id
                   ORDER BY (f.assigned_by = 'hand') DESC, (f.box_right - f.box_left) * (f.box_bottom - f.box_top) DESC,
                            f.face_id
                   LIMIT 1) c ON true
LEFT JOIN pgvision.images im ON im.image_id = c.image_id;

COMMENT ON VIEW pgvision.people IS
'People: every identity (name NULL = unnamed, found by clustering) with its faces, photos, hand-placed faces and a cover face (uri and box).';
