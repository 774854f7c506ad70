-- pgvision.cluster_step(pass_id, batch_size) -> pgvision.cluster_passes
--
-- Purpose: run one batch of an open clustering pass (see cluster_start.v1.sql); call it in
--   its own transaction (autocommit) until the returned phase is 'done'. Whatever a killed
--   client or server leaves behind is whole batches: the batch's work and the pass's
--   cursor commit together, so the next call (after cluster_start resumes the pass) goes on
--   from the cursor.
--   incremental: the next batch_size faces without a person, not ignored, not deferred,
--     with face_id above the cursor; their neighbourhoods and those of the unassigned faces
--     among their neighbours (pgvision._cluster_neighbours, from the ANN index); people
--     already formed take part as fixed faces; the decision (_cluster_assign) assigns
--     faces (assigned_by = 'cluster') or defers them (pgvision.cluster_deferred). Only
--     faces whose own neighbourhood was read are decided: a face seen only as someone's
--     neighbour waits for its own batch.
--   full, phase 'neighbours': the next batch_size faces of the model (face_id order):
--     their neighbourhoods are stored in pgvision.cluster_edges.
--   full, phase 'assign' (one step, one transaction): the decision over every face, from
--     the stored edges. People somebody touched by hand (a name, or a hand-placed face)
--     keep every face they have and take part as fixed faces; the faces of the other
--     (unnamed, automatic) people and the unassigned faces are decided again: given their
--     new person (only rows that change are written) or deferred; emptied unnamed people
--     are removed.
-- Arguments:
--   pass_id     an open pass (pgvision.cluster_passes).
--   batch_size  faces per step, 1..100000 (default 1000).
-- Returns: the pass row after the step (processed, assigned, created, unassigned, phase).
-- Fails (SQLSTATE): 22004 NULL pass_id; 22023 batch_size outside 1..100000; P0002 no such
--   pass; 55000 the pass is finished or abandoned.
-- Collections: where faces carry a collection_id (migration 0017), faces of different
--   collections are never neighbours and a new person is created in its faces' collection;
--   the column is read through to_jsonb(row), so the function is the same before and after.
-- Rights: SECURITY INVOKER; EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.cluster_step(pass_id bigint, batch_size integer DEFAULT 1000)
RETURNS pgvision.cluster_passes
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    p pgvision.cluster_passes;
    m pgvision.models;
    batch bigint[];
    hop bigint[];
    res record;
    n_unassigned bigint;
BEGIN
    IF cluster_step.pass_id IS NULL THEN
        RAISE EXCEPTION 'pass_id must not be NULL: pass the pass_id cluster_start returned'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF batch_size IS NULL OR batch_size NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000, got %', coalesce(batch_size::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1885828720, 0);  -- 'pgvp': people writes take turns
    SELECT * INTO p FROM pgvision.cluster_passes c WHERE c.pass_id = cluster_step.pass_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no clustering pass with pass_id %', cluster_step.pass_id
            USING ERRCODE = 'no_data_found', HINT = 'open one with pgvision.cluster_start';
    END IF;
    IF p.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'clustering pass % is %: open a new one with pgvision.cluster_start', p.pass_id,
            CASE p.phase WHEN 'done' THEN 'finished' ELSE p.phase END
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT * INTO STRICT m FROM pgvision.models x WHERE x.model_id = p.model_id;

    CREATE TEMPORARY TABLE IF NOT EXISTS pv_edges (a bigint NOT NULL, b bigint NOT NULL, d float8 NOT NULL) ON COMMIT DROP;
    CREATE TEMPORARY TABLE IF NOT EXISTS pv_nodes (
        face_id bigint PRIMARY KEY, image_id bigint NOT NULL, coll text, fixed bigint, old bigint,
        listed boolean NOT NULL, decide boolean NOT NULL, cnt integer, core boolean, comp bigint, person bigint
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.pv_edges, pg_temp.pv_nodes;

    IF p.phase = 'neighbours' THEN
        batch := ARRAY(SELECT e.face_id FROM pgvision.face_embeddings e
                       WHERE e.model_id = m.model_id AND e.face_id > p.cursor
                         AND NOT (SELECT f.ignored FROM pgvision.faces f WHERE f.face_id = e.face_id)
                       ORDER BY e.face_id LIMIT batch_size);
        IF cardinality(batch) = 0 THEN
            UPDATE pgvision.cluster_passes c SET phase = 'assign' WHERE c.pass_id = p.pass_id RETURNING * INTO p;
            RETURN p;
        END IF;
        PERFORM pgvision._cluster_neighbours(m, batch, p.neighbours, p.max_distance);
        INSERT INTO pgvision.cluster_edges (pass_id, a, b, d) SELECT p.pass_id, e.a, e.b, e.d FROM pg_temp.pv_edges e;
        UPDATE pgvision.cluster_passes c SET cursor = batch[cardinality(batch)], processed = c.processed + cardinality(batch)
        WHERE c.pass_id = p.pass_id RETURNING * INTO p;
        RETURN p;
    END IF;

    IF p.phase = 'assign' THEN
        INSERT INTO pg_temp.pv_edges (a, b, d) SELECT e.a, e.b, e.d FROM pgvision.cluster_edges e WHERE e.pass_id = p.pass_id;
        -- people somebody touched by hand (a name, or a hand-placed face) keep every face
        CREATE TEMPORARY TABLE IF NOT EXISTS pv_kept (identity_id bigint PRIMARY KEY) ON COMMIT DROP;
        TRUNCATE pg_temp.pv_kept;
        INSERT INTO pg_temp.pv_kept
        SELECT i.identity_id FROM pgvision.identities i WHERE i.name IS NOT NULL
        UNION SELECT f.identity_id FROM pgvision.faces f WHERE f.assigned_by = 'hand';
        INSERT INTO pg_temp.pv_nodes (face_id, image_id, coll, fixed, old, listed, decide)
        SELECT f.face_id, f.image_id, pg_catalog.to_jsonb(f) ->> 'collection_id',
               CASE WHEN k.identity_id IS NOT NULL THEN f.identity_id END,
               CASE WHEN k.identity_id IS NULL THEN f.identity_id END,
               true, k.identity_id IS NULL
        FROM pgvision.face_embeddings e JOIN pgvision.faces f ON f.face_id = e.face_id
        LEFT JOIN pg_temp.pv_kept k ON k.identity_id = f.identity_id
        WHERE e.model_id = m.model_id AND e.face_id <= p.cursor AND NOT f.ignored;
        SELECT * INTO res FROM pgvision._cluster_assign(p.min_faces, true);
        PERFORM set_config('pgvision.cluster_pass', p.pass_id::text, true);
        UPDATE pgvision.faces f
        SET identity_id = n.person, assigned_by = CASE WHEN n.person IS NULL THEN NULL ELSE 'cluster' END
        FROM pg_temp.pv_nodes n
        WHERE n.face_id = f.face_id AND n.decide AND f.assigned_by IS DISTINCT FROM 'hand'
          AND f.identity_id IS NOT DISTINCT FROM n.old AND f.identity_id IS DISTINCT FROM n.person;
        PERFORM set_config('pgvision.cluster_pass', '', true);
        DELETE FROM pgvision.cluster_deferred d WHERE d.model_id = m.model_id;
        INSERT INTO pgvision.cluster_deferred (model_id, face_id, pass_id)
        SELECT m.model_id, n.face_id, p.pass_id FROM pg_temp.pv_nodes n WHERE n.decide AND n.person IS NULL;
        GET DIAGNOSTICS n_unassigned = ROW_COUNT;
        DELETE FROM pgvision.identities i
        WHERE i.name IS NULL
          AND i.identity_id IN (SELECT n.old FROM pg_temp.pv_nodes n WHERE n.old IS NOT NULL
                                UNION SELECT c.person FROM pg_temp.pv_comp c WHERE c.person IS NOT NULL)
          AND NOT EXISTS (SELECT 1 FROM pgvision.faces g WHERE g.identity_id = i.identity_id);
        DELETE FROM pgvision.cluster_edges e WHERE e.pass_id = p.pass_id;
        UPDATE pgvision.cluster_passes c
        SET phase = 'done', finished_at = now(), assigned = res.assigned, created = res.created, unassigned = n_unassigned
        WHERE c.pass_id = p.pass_id RETURNING * INTO p;
        INSERT INTO pgvision.people_audit (action, detail)
        VALUES ('cluster', jsonb_build_object('pass_id', p.pass_id, 'model', m.name, 'mode', p.mode,
                                              'max_distance', p.max_distance, 'min_faces', p.min_faces,
                                              'assigned', p.assigned, 'created', p.created, 'unassigned', p.unassigned));
        RETURN p;
    END IF;

    -- incremental
    batch := ARRAY(SELECT f.face_id FROM pgvision.faces f
                   WHERE f.identity_id IS NULL AND NOT f.ignored AND f.face_id > p.cursor
                     AND EXISTS (SELECT 1 FROM pgvision.face_embeddings e WHERE e.model_id = m.model_id AND e.face_id = f.face_id)
                     AND NOT EXISTS (SELECT 1 FROM pgvision.cluster_deferred d
                                     WHERE d.model_id = m.model_id AND d.face_id = f.face_id)
                   ORDER BY f.face_id LIMIT batch_size);
    IF cardinality(batch) = 0 THEN
        UPDATE pgvision.cluster_passes c
        SET phase = 'done', finished_at = now(),
            unassigned = (SELECT count(*) FROM pgvision.cluster_deferred d WHERE d.model_id = m.model_id)
        WHERE c.pass_id = p.pass_id RETURNING * INTO p;
        INSERT INTO pgvision.people_audit (action, detail)
        VALUES ('cluster', jsonb_build_object('pass_id', p.pass_id, 'model', m.name, 'mode', p.mode,
                                              'max_distance', p.max_distance, 'min_faces', p.min_faces,
                                              'assigned', p.assigned, 'created', p.created, 'unassigned', p.unassigned));
        RETURN p;
    END IF;
    PERFORM pgvision._cluster_neighbours(m, batch, p.neighbours, p.max_distance);
    INSERT INTO pg_temp.pv_nodes (face_id, image_id, coll, fixed, old, listed, decide)
    SELECT f.face_id, f.image_id, pg_catalog.to_jsonb(f) ->> 'collection_id', NULL, NULL, true, true
    FROM pgvision.faces f WHERE f.face_id = ANY (batch);
    -- the second hop: unassigned neighbours get their own neighbourhoods (their core test)
    hop := ARRAY(SELECT DISTINCT e.b FROM pg_temp.pv_edges e
                 WHERE NOT EXISTS (SELECT 1 FROM pg_temp.pv_nodes n WHERE n.face_id = e.b)
                   AND (SELECT f.identity_id FROM pgvision.faces f WHERE f.face_id = e.b) IS NULL);
    IF cardinality(hop) > 0 THEN
        PERFORM pgvision._cluster_neighbours(m, hop, p.neighbours, p.max_distance);
        INSERT INTO pg_temp.pv_nodes (face_id, image_id, coll, fixed, old, listed, decide)
        SELECT f.face_id, f.image_id, pg_catalog.to_jsonb(f) ->> 'collection_id', NULL, NULL, true, true
        FROM pgvision.faces f WHERE f.face_id = ANY (hop);
    END IF;
    INSERT INTO pg_temp.pv_nodes (face_id, image_id, coll, fixed, old, listed, decide)
    SELECT f.face_id, f.image_id, pg_catalog.to_jsonb(f) ->> 'collection_id', f.identity_id, NULL, false, false
    FROM (SELECT e.b AS id FROM pg_temp.pv_edges e UNION SELECT e.a FROM pg_temp.pv_edges e) x
    JOIN pgvision.faces f ON f.face_id = x.id
    ON CONFLICT (face_id) DO NOTHING;
    SELECT * INTO res FROM pgvision._cluster_assign(p.min_faces, false);
    PERFORM set_config('pgvision.cluster_pass', p.pass_id::text, true);
    UPDATE pgvision.faces f SET identity_id = n.person, assigned_by = 'cluster'
    FROM pg_temp.pv_nodes n
    WHERE n.face_id = f.face_id AND n.decide AND n.person IS NOT NULL AND f.identity_id IS NULL;
    PERFORM set_config('pgvision.cluster_pass', '', true);
    DELETE FROM pgvision.cluster_deferred d USING pg_temp.pv_nodes n
    WHERE d.model_id = m.model_id AND d.face_id = n.face_id AND n.person IS NOT NULL;
    INSERT INTO pgvision.cluster_deferred (model_id, face_id, pass_id)
    SELECT m.model_id, n.face_id, p.pass_id FROM pg_temp.pv_nodes n WHERE n.listed AND n.person IS NULL
    ON CONFLICT DO NOTHING;
    DELETE FROM pgvision.identities i
    WHERE i.name IS NULL AND i.identity_id IN (SELECT c.person FROM pg_temp.pv_comp c WHERE c.person IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM pgvision.faces g WHERE g.identity_id = i.identity_id);
    UPDATE pgvision.cluster_passes c
    SET cursor = batch[cardinality(batch)], processed = least(c.total, c.processed + cardinality(batch) + cardinality(hop)),
        assigned = c.assigned + res.assigned, created = c.created + res.created
    WHERE c.pass_id = p.pass_id RETURNING * INTO p;
    RETURN p;
END
$fn$;

COMMENT ON FUNCTION pgvision.cluster_step(bigint, integer) IS
'One batch of an open clustering pass (one transaction per call; a rerun goes on from the pass''s cursor); returns the pass row, phase = done at the end. '
'Fails (SQLSTATE): 22004 NULL pass_id; 22023 batch_size outside 1..100000; P0002 no such pass; 55000 the pass is finished.';
