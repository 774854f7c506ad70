-- pgvision.people_move(face_ids, to_person) -> TABLE (identity_id bigint, name text, faces bigint)
--
-- Purpose: move faces to another person, or to a new unnamed one, by hand: one transaction,
--   one row in pgvision.people_audit (action 'move', the person ids, the face ids). The
--   faces are marked assigned_by = 'hand', so no clustering pass moves them again; a
--   person left without faces and without a name is removed. identify's templates follow
--   (the _sync_templates trigger).
-- Arguments:
--   face_ids   faces to move (pgvision.faces.face_id), at least one.
--   to_person  identity_id of the person to move them to; NULL (default) = a new unnamed person.
-- Returns: the person the faces are in now, with its face count.
-- Fails (SQLSTATE): 22004 NULL or empty face_ids; P0002 no such face or person;
--   22023 an ignored face; 23505 two faces of one photo, or the person already has a face
--   in that photo (a person has at most one face per photo).
-- Rights: SECURITY INVOKER; EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.people_move(face_ids bigint[], to_person bigint DEFAULT NULL)
RETURNS TABLE (identity_id bigint, name text, faces bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    target bigint := pgvision._people_move(face_ids, to_person, 'move');
BEGIN
    RETURN QUERY SELECT i.identity_id, i.name, (SELECT count(*) FROM pgvision.faces f WHERE f.identity_id = target)
                 FROM pgvision.identities i WHERE i.identity_id = target;
END
$fn$;

COMMENT ON FUNCTION pgvision.people_move(bigint[], bigint) IS
'Move faces to a person (NULL = a new unnamed one), by hand (never moved again by clustering); one transaction, audited. '
'Fails (SQLSTATE): 22004 no faces; P0002 no such face or person; 22023 an ignored face; 23505 two faces of one photo in one person.';
