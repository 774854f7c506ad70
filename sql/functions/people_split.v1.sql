-- pgvision.people_split(person, face_ids) -> TABLE (identity_id bigint, name text, faces bigint)
--
-- Purpose: split a person: face_ids (all the person's) leave it for a new unnamed person,
--   by hand (assigned_by = 'hand' on the faces that move); one transaction, one row in
--   pgvision.people_audit (action 'split'). The rest of the person stays as it is.
-- Arguments:
--   person    identity_id of the person to split.
--   face_ids  its faces that form the new person; at least one, and not all of them.
-- Returns: the new person, with its face count.
-- Fails (SQLSTATE): 22004 NULL person, NULL or empty face_ids; P0002 no such person or face;
--   22023 a face that is not the person's, or every face of the person.
-- Rights: SECURITY INVOKER; EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.people_split(person bigint, face_ids bigint[])
RETURNS TABLE (identity_id bigint, name text, faces bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    r record;
    target bigint;
BEGIN
    IF person IS NULL THEN
        RAISE EXCEPTION 'person must not be NULL: pass an identity_id from pgvision.people'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF face_ids IS NULL OR cardinality(face_ids) = 0 THEN
        RAISE EXCEPTION 'face_ids must name at least one face of person %', person
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgvision.identities i WHERE i.identity_id = person) THEN
        RAISE EXCEPTION 'no person with identity_id %', person
            USING ERRCODE = 'no_data_found', HINT = 'pick one from pgvision.people';
    END IF;
    SELECT x AS face_id, f.identity_id INTO r FROM unnest(face_ids) x LEFT JOIN pgvision.faces f ON f.face_id = x
    WHERE f.identity_id IS DISTINCT FROM person ORDER BY x LIMIT 1;
    IF FOUND THEN
        IF r.face_id IS NULL OR NOT EXISTS (SELECT 1 FROM pgvision.faces f WHERE f.face_id = r.face_id) THEN
            RAISE EXCEPTION 'no face with face_id %', coalesce(r.face_id::text, 'NULL')
                USING ERRCODE = 'no_data_found', HINT = 'pick faces from pgvision.faces';
        END IF;
        RAISE EXCEPTION 'face % is not person %''s (it is %): split takes faces of the person only',
            r.face_id, person, coalesce('person ' || r.identity_id, 'unassigned')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pgvision.faces f WHERE f.identity_id = person AND f.face_id <> ALL (face_ids)) THEN
        RAISE EXCEPTION 'face_ids hold every face of person %: leave at least one (or rename the person with people_name)', person
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    target := pgvision._people_move(face_ids, NULL, 'split');
    RETURN QUERY SELECT i.identity_id, i.name, (SELECT count(*) FROM pgvision.faces f WHERE f.identity_id = target)
                 FROM pgvision.identities i WHERE i.identity_id = target;
END
$fn$;

COMMENT ON FUNCTION pgvision.people_split(bigint, bigint[]) IS
'Split a person: the given faces (the person''s, not all) become a new unnamed person, by hand; one transaction, audited. '
'Fails (SQLSTATE): 22004 NULL person or no faces; P0002 no such person or face; 22023 a face not the person''s, or all of them.';
