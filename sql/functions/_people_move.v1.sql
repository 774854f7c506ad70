-- pgvision._people_move(face_ids, to_person, action) -> bigint
--
-- Purpose: the shared body of people_move and people_split (one audit row, written by the
--   caller's action name): put face_ids into to_person (NULL = a new unnamed person),
--   marked assigned_by = 'hand' (no clustering pass moves them again), out of the deferred
--   list; a person left with no face and no name is removed.
-- Checks (nothing changes when one fails):
--   22004 NULL or empty face_ids; P0002 a face that does not exist, or no such to_person;
--   22023 an ignored face (unignore it first: people_ignore(ARRAY[..], false)), faces of
--   several collections, or a to_person of another collection than the faces (migration 0017);
--   23505 two of the faces are in one photo, or to_person already has another face in the
--   photo of one of them (a person has at most one face per photo).
-- Returns: the identity_id the faces are in now.
CREATE OR REPLACE FUNCTION pgvision._people_move(face_ids bigint[], to_person bigint, action text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    ids bigint[];
    missing bigint;
    r record;
    target bigint := to_person;
    sources bigint[];
    colls text[];
    old_coll text;
BEGIN
    IF face_ids IS NULL OR cardinality(face_ids) = 0 THEN
        RAISE EXCEPTION 'face_ids must name at least one face: pass ARRAY[face_id, ...] from pgvision.faces'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1885828720, 0);  -- 'pgvp': people writes take turns
    ids := ARRAY(SELECT DISTINCT x FROM unnest(face_ids) x WHERE x IS NOT NULL ORDER BY 1);
    SELECT x INTO missing FROM unnest(ids) x
    WHERE NOT EXISTS (SELECT 1 FROM pgvision.faces f WHERE f.face_id = x) ORDER BY 1 LIMIT 1;
    IF missing IS NOT NULL OR cardinality(ids) = 0 THEN
        RAISE EXCEPTION 'no face with face_id %', coalesce(missing::text, 'NULL')
            USING ERRCODE = 'no_data_found', HINT = 'pick faces from pgvision.faces';
    END IF;
    IF target IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pgvision.identities i WHERE i.identity_id = target) THEN
        RAISE EXCEPTION 'no person with identity_id %', target
            USING ERRCODE = 'no_data_found', HINT = 'pick one from pgvision.people, or pass NULL for a new person';
    END IF;
    SELECT f.face_id INTO missing FROM pgvision.faces f WHERE f.face_id = ANY (ids) AND f.ignored ORDER BY f.face_id LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'face % is marked ignored (not a face): unignore it first with pgvision.people_ignore(ARRAY[%], false)',
            missing, missing
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT f.image_id, min(f.face_id) AS a, max(f.face_id) AS b INTO r
    FROM pgvision.faces f WHERE f.face_id = ANY (ids) GROUP BY f.image_id HAVING count(*) > 1 ORDER BY f.image_id LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'faces % and % are in the same photo (image %): a person has at most one face per photo; move one of them',
            r.a, r.b, r.image_id
            USING ERRCODE = 'unique_violation';
    END IF;
    IF target IS NOT NULL THEN
        SELECT f.face_id AS a, g.face_id AS b, f.image_id INTO r
        FROM pgvision.faces f JOIN pgvision.faces g ON g.image_id = f.image_id AND g.identity_id = target
        WHERE f.face_id = ANY (ids) AND g.face_id <> ALL (ids) ORDER BY f.face_id LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'person % already has face % in the photo of face % (image %): a person has at most one face per photo; move face % out first',
                target, r.b, r.a, r.image_id, r.b
                USING ERRCODE = 'unique_violation';
        END IF;
    END IF;
    -- collections (migration 0017; read through to_jsonb, so the same before it): a person
    -- holds faces of its own collection only
    colls := ARRAY(SELECT DISTINCT pg_catalog.to_jsonb(f) ->> 'collection_id' FROM pgvision.faces f
                   WHERE f.face_id = ANY (ids) AND pg_catalog.to_jsonb(f) ? 'collection_id');
    IF cardinality(colls) > 1 THEN
        RAISE EXCEPTION 'the faces are in different collections (%): a person holds faces of one collection; move them in separate calls',
            array_to_string(colls, ', ')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF target IS NOT NULL AND cardinality(colls) = 1
       AND (SELECT pg_catalog.to_jsonb(i) ->> 'collection_id' FROM pgvision.identities i WHERE i.identity_id = target)
           IS DISTINCT FROM colls[1] THEN
        RAISE EXCEPTION 'person % is in another collection than the faces (collection %): a person holds faces of its own collection only',
            target, colls[1]
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    sources := ARRAY(SELECT DISTINCT f.identity_id FROM pgvision.faces f
                     WHERE f.face_id = ANY (ids) AND f.identity_id IS NOT NULL AND f.identity_id IS DISTINCT FROM target);
    IF target IS NULL THEN
        old_coll := current_setting('pgvision.collection_id', true);
        IF cardinality(colls) = 1 THEN  -- the new person in the faces' collection (the column's default)
            PERFORM set_config('pgvision.collection_id', colls[1], true);
        END IF;
        INSERT INTO pgvision.identities (name) VALUES (NULL) RETURNING identity_id INTO target;
        PERFORM set_config('pgvision.collection_id', coalesce(old_coll, ''), true);
    END IF;
    UPDATE pgvision.faces f SET identity_id = target, assigned_by = 'hand'
    WHERE f.face_id = ANY (ids) AND (f.identity_id IS DISTINCT FROM target OR f.assigned_by IS DISTINCT FROM 'hand');
    DELETE FROM pgvision.cluster_deferred d WHERE d.face_id = ANY (ids);
    DELETE FROM pgvision.identities i
    WHERE i.identity_id = ANY (sources) AND i.name IS NULL
      AND NOT EXISTS (SELECT 1 FROM pgvision.faces g WHERE g.identity_id = i.identity_id);
    INSERT INTO pgvision.people_audit (action, identity_ids, face_ids, detail)
    VALUES (action, ARRAY[target] || sources, ids, jsonb_build_object('to', target, 'from', to_jsonb(sources)));
    RETURN target;
END
$fn$;

COMMENT ON FUNCTION pgvision._people_move(bigint[], bigint, text) IS
'Internal: body of people_move / people_split: faces into a person (NULL = new), marked hand-placed, one audit row.';
