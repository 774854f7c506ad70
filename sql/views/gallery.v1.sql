-- pgvision.gallery: every enrolled identity with the number of faces (and photos) in its
-- gallery. identify() needs at least one face per identity; several make it sturdier.
CREATE OR REPLACE VIEW pgvision.gallery AS
SELECT p.identity_id, p.name, count(f.face_id) AS faces, count(DISTINCT f.image_id) AS images
FROM pgvision.identities p
LEFT JOIN pgvision.faces f ON f.identity_id = p.identity_id
GROUP BY p.identity_id, p.name;

COMMENT ON VIEW pgvision.gallery IS 'Identities with their enrolled face and photo counts.';
