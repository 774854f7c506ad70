-- pgvision.people_merge(into_person, from_person) -> TABLE (identity_id bigint, name text, faces bigint)
--
-- Purpose: merge two people by hand: every face of from_person moves to into_person
--   (marked assigned_by = 'hand') and from_person is removed. into_person keeps its name;
--   when it has none it takes from_person's. One transaction, one row in
--   pgvision.people_audit (action 'merge': both ids, the faces moved, from_person's name).
-- Arguments: into_person, from_person: identity_ids, different.
-- Returns: the merged person with its face count.
-- Fails (SQLSTATE): 22004 a NULL id; 22023 the same id twice, or two collections (migration
--   0017); P0002 no such person;
--   23505 both have a face in one photo (a person has at most one face per photo: move one
--   of the two faces first).
-- Rights: SECURITY INVOKER; EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.people_merge(into_person bigint, from_person bigint)
RETURNS TABLE (identity_id bigint, name text, faces bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    into_name text;
    from_name text;
    moved bigint[];
    r record;
    missing bigint;
BEGIN
    IF into_person IS NULL OR from_person IS NULL THEN
        RAISE EXCEPTION 'into_person and from_person must not be NULL: pass two identity_ids from pgvision.people'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF into_person = from_person THEN
        RAISE EXCEPTION 'cannot merge person % into itself: pass two different people', into_person
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1885828720, 0);  -- 'pgvp': people writes take turns
    SELECT x INTO missing FROM unnest(ARRAY[into_person, from_person]) x
    WHERE NOT EXISTS (SELECT 1 FROM pgvision.identities i WHERE i.identity_id = x) LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'no person with identity_id %', missing
            USING ERRCODE = 'no_data_found', HINT = 'pick one from pgvision.people';
    END IF;
    SELECT i.name INTO into_name FROM pgvision.identities i WHERE i.identity_id = into_person FOR UPDATE;
    SELECT i.name INTO from_name FROM pgvision.identities i WHERE i.identity_id = from_person FOR UPDATE;
    IF (SELECT pg_catalog.to_jsonb(i) ->> 'collection_id' FROM pgvision.identities i WHERE i.identity_id = into_person)
       IS DISTINCT FROM
       (SELECT pg_catalog.to_jsonb(i) ->> 'collection_id' FROM pgvision.identities i WHERE i.identity_id = from_person) THEN
        RAISE EXCEPTION 'persons % and % are in different collections: only people of one collection can be merged',
            into_person, from_person
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT f.face_id AS a, g.face_id AS b, f.image_id INTO r
    FROM pgvision.faces f JOIN pgvision.faces g ON g.image_id = f.image_id AND g.identity_id = from_person
    WHERE f.identity_id = into_person ORDER BY f.image_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'persons % and % both have a face in image % (faces % and %): a person has at most one face per photo; move one of them first (pgvision.people_move)',
            into_person, from_person, r.image_id, r.a, r.b
            USING ERRCODE = 'unique_violation';
    END IF;
    WITH m AS (UPDATE pgvision.faces f SET identity_id = into_person, assigned_by = 'hand'
               WHERE f.identity_id = from_person RETURNING f.face_id)
    SELECT coalesce(array_agg(m.face_id ORDER BY m.face_id), '{}') INTO moved FROM m;
    DELETE FROM pgvision.identities i WHERE i.identity_id = from_person;
    IF into_name IS NULL AND from_name IS NOT NULL THEN
        UPDATE pgvision.identities i SET name = from_name WHERE i.identity_id = into_person;
    END IF;
    INSERT INTO pgvision.people_audit (action, identity_ids, face_ids, detail)
    VALUES ('merge', ARRAY[into_person, from_person], moved,
            jsonb_build_object('into_name', into_name, 'from_name', from_name));
    RETURN QUERY SELECT i.identity_id, i.name, (SELECT count(*) FROM pgvision.faces f WHERE f.identity_id = into_person)
                 FROM pgvision.identities i WHERE i.identity_id = into_person;
END
$fn$;

COMMENT ON FUNCTION pgvision.people_merge(bigint, bigint) IS
'Merge from_person into into_person by hand (its faces move, it is removed; a missing name is taken over); one transaction, audited. '
'Fails (SQLSTATE): 22004 NULL id; 22023 same id twice; P0002 no such person; 23505 both have a face in one photo.';
