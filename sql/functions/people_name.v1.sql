-- pgvision.people_name(person, new_name) -> TABLE (identity_id bigint, name text, faces bigint)
--
-- Purpose: name, rename or unname (name NULL) a person. Naming is a hand decision about
--   the whole person: every face of it is marked assigned_by = 'hand' (no clustering pass
--   moves them again). One transaction, one row in pgvision.people_audit (action 'name',
--   the old and the new name in detail).
-- Arguments:
--   person  identity_id (pgvision.people / pgvision.identities).
--   new_name  1..200 characters, or NULL to remove the name.
-- Returns: the person with its face count.
-- Fails (SQLSTATE): 22004 NULL person; P0002 no such person; 22023 an empty name or one over
--   200 characters; 23505 another person has that name (merge them with people_merge).
-- Rights: SECURITY INVOKER; EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.people_name(person bigint, new_name text)
RETURNS TABLE (identity_id bigint, name text, faces bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
#variable_conflict use_column
DECLARE
    old_name text;
    other bigint;
    marked bigint[];
BEGIN
    IF person IS NULL THEN
        RAISE EXCEPTION 'person must not be NULL: pass an identity_id from pgvision.people'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF new_name IS NOT NULL AND length(new_name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a name must be 1 to 200 characters, got %: give a shorter, non-empty name (or NULL to remove it)',
            length(new_name)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1885828720, 0);  -- 'pgvp': people writes take turns
    SELECT i.name INTO old_name FROM pgvision.identities i WHERE i.identity_id = person FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no person with identity_id %', person
            USING ERRCODE = 'no_data_found', HINT = 'pick one from pgvision.people';
    END IF;
    -- names are unique per collection where there are collections (migration 0017)
    SELECT i.identity_id INTO other FROM pgvision.identities i
    WHERE i.name = new_name AND i.identity_id <> person
      AND (pg_catalog.to_jsonb(i) ->> 'collection_id') IS NOT DISTINCT FROM
          (SELECT pg_catalog.to_jsonb(j) ->> 'collection_id' FROM pgvision.identities j WHERE j.identity_id = person);
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'the name % is already person %''s: merge the two with pgvision.people_merge(%, %), or pick another name',
            quote_literal(new_name), other, other, person
            USING ERRCODE = 'unique_violation';
    END IF;
    UPDATE pgvision.identities i SET name = new_name WHERE i.identity_id = person;
    WITH m AS (UPDATE pgvision.faces f SET assigned_by = 'hand'
               WHERE f.identity_id = person AND f.assigned_by IS DISTINCT FROM 'hand' RETURNING f.face_id)
    SELECT coalesce(array_agg(m.face_id ORDER BY m.face_id), '{}') INTO marked FROM m;
    INSERT INTO pgvision.people_audit (action, identity_ids, face_ids, detail)
    VALUES ('name', ARRAY[person], marked, jsonb_build_object('old_name', old_name, 'new_name', new_name));
    RETURN QUERY SELECT i.identity_id, i.name, (SELECT count(*) FROM pgvision.faces f WHERE f.identity_id = person)
                 FROM pgvision.identities i WHERE i.identity_id = person;
END
$fn$;

COMMENT ON FUNCTION pgvision.people_name(bigint, text) IS
'Name, rename or unname (NULL) a person; its faces become hand-placed (never moved by clustering); one transaction, audited. '
'Fails (SQLSTATE): 22004 NULL person; P0002 no such person; 22023 empty or over-long name; 23505 name taken by another person.';
