-- pgvision.people_ignore(face_ids, ignore) -> TABLE (face_id bigint, ignored boolean)
--
-- Purpose: mark detections as "not a face / ignore" (ignore => true, default), or take the
--   mark back (false). An ignored face leaves its person (a person left without faces and
--   without a name is removed), and clustering never assigns it nor counts it as anyone's
--   neighbour. One transaction, one row in pgvision.people_audit (action 'ignore' or
--   'unignore', the faces, the people they left).
-- Arguments:
--   face_ids  faces (pgvision.faces.face_id), at least one.
--   ignore    true = ignore them; false = take the mark back (they stay without a person).
-- Returns: one row per face with its new mark.
-- Fails (SQLSTATE): 22004 NULL or empty face_ids, NULL ignore; P0002 no such face.
-- Rights: SECURITY INVOKER; EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.people_ignore(face_ids bigint[], ignore boolean DEFAULT true)
RETURNS TABLE (face_id bigint, ignored boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    ids bigint[];
    missing bigint;
    left_people bigint[];
BEGIN
    IF face_ids IS NULL OR cardinality(face_ids) = 0 OR ignore IS NULL THEN
        RAISE EXCEPTION 'face_ids must name at least one face and ignore must be true or false'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1885828720, 0);  -- 'pgvp': people writes take turns
    ids := ARRAY(SELECT DISTINCT x FROM unnest(face_ids) x ORDER BY 1);
    SELECT x INTO missing FROM unnest(ids) x
    WHERE x IS NULL OR NOT EXISTS (SELECT 1 FROM pgvision.faces f WHERE f.face_id = x) ORDER BY 1 NULLS FIRST LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'no face with face_id %', coalesce(missing::text, 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'pick faces from pgvision.faces';
    END IF;
    left_people := ARRAY(SELECT DISTINCT f.identity_id FROM pgvision.faces f
                         WHERE f.face_id = ANY (ids) AND f.identity_id IS NOT NULL AND ignore);
    IF ignore THEN
        UPDATE pgvision.faces f SET ignored = true, identity_id = NULL, assigned_by = NULL WHERE f.face_id = ANY (ids);
        DELETE FROM pgvision.cluster_deferred d WHERE d.face_id = ANY (ids);
        DELETE FROM pgvision.identities i
        WHERE i.identity_id = ANY (left_people) AND i.name IS NULL
          AND NOT EXISTS (SELECT 1 FROM pgvision.faces g WHERE g.identity_id = i.identity_id);
    ELSE
        UPDATE pgvision.faces f SET ignored = false WHERE f.face_id = ANY (ids);
    END IF;
    INSERT INTO pgvision.people_audit (action, identity_ids, face_ids)
    VALUES (CASE WHEN ignore THEN 'ignore' ELSE 'unignore' END, left_people, ids);
    RETURN QUERY SELECT f.face_id, f.ignored FROM pgvision.faces f WHERE f.face_id = ANY (ids) ORDER BY f.face_id;
END
$fn$;

COMMENT ON FUNCTION pgvision.people_ignore(bigint[], boolean) IS
'Mark faces as not a face / ignored (true) or take the mark back (false); ignored faces leave their person and are never clustered; one transaction, audited. '
'Fails (SQLSTATE): 22004 no faces or NULL ignore; P0002 no such face.';
