-- pgvision.cluster_start(model, mode, max_distance, min_faces, neighbours) -> pgvision.cluster_passes
--
-- Purpose: open a clustering pass of a face model's faces (or resume the open one), to be
--   run batch by batch with pgvision.cluster_step (each call one transaction: a client
--   killed at any point leaves whole batches only, and the next cluster_start of the same
--   mode resumes the open pass where it stopped). pgvision.cluster_faces does start and
--   every step in one call.
-- Arguments:
--   model         face model name; NULL = the default face model.
--   mode          'incremental' (default): faces without a person and not tried since, in
--                 face_id order, join a person or form new ones; faces that qualify for
--                 nothing stay unassigned (pgvision.cluster_deferred) and are retried when a
--                 new face lands near them, or by the next full pass.
--                 'full': the unassigned faces and the faces of people nobody touched by
--                 hand (unnamed, no hand-placed face) are clustered again from scratch;
--                 named people and people with a hand-placed face keep every face (and
--                 may gain faces), and a new group keeps the id of the old automatic
--                 person it overlaps most (see _cluster_assign.v1.sql for the rule).
--   max_distance  largest distance of a close pair, in the model's metric (dlib: L2;
--                 facenet: cosine distance, 0 = same, 2 = opposite), finite and > 0;
--                 NULL = the model's default (pgvision._cluster_distance: the calibrated
--                 threshold x 1.1, else dlib 0.50 / facenet 0.25).
--   min_faces     faces within max_distance (itself counted) that make a core face and
--                 the smallest new person, 1..1000 (default 3).
--   neighbours    neighbours asked from the ANN index per face (k), 1..1000 (default 16).
-- Returns: the pass row (pass_id, phase, total faces to go through, ...). An open pass of
--   the same model and mode is returned as it is (its own settings); one of the other mode
--   is closed as 'abandoned' (nothing it committed is undone) and a new one opened.
-- Fails (SQLSTATE): 22004 NULL mode; 22023 mode not 'incremental' / 'full', max_distance not
--   finite and > 0, min_faces or neighbours outside 1..1000, an image model named;
--   42704 unknown model; 55000 no face model loaded yet.
-- Rights: SECURITY INVOKER (the caller's row-level security and grants apply);
--   EXECUTE for pgvision_loader and the owner only.
CREATE OR REPLACE FUNCTION pgvision.cluster_start(
    model text DEFAULT NULL,
    mode text DEFAULT 'incremental',
    max_distance real DEFAULT NULL,
    min_faces integer DEFAULT 3,
    neighbours integer DEFAULT 16)
RETURNS pgvision.cluster_passes
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    m pgvision.models := pgvision._resolve_model(model, 'face');
    p pgvision.cluster_passes;
    dist real;
BEGIN
    IF mode IS NULL THEN
        RAISE EXCEPTION 'mode must not be NULL: pass mode => ''incremental'' or ''full'''
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF mode NOT IN ('incremental', 'full') THEN
        RAISE EXCEPTION 'mode must be ''incremental'' or ''full'', got %', quote_literal(mode)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    dist := coalesce(max_distance, pgvision._cluster_distance(m));
    IF dist IS NULL OR NOT (dist > 0 AND dist < 'Infinity'::real) THEN
        RAISE EXCEPTION 'max_distance must be a finite distance > 0, got %: pass max_distance => a distance such as 0.5 (dlib, L2)',
            coalesce(dist::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF min_faces IS NULL OR min_faces NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'min_faces must be between 1 and 1000, got %', coalesce(min_faces::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF neighbours IS NULL OR neighbours NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'neighbours must be between 1 and 1000, got %', coalesce(neighbours::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_catalog.pg_advisory_xact_lock(1885828720, 0);  -- 'pgvp': people writes take turns
    SELECT * INTO p FROM pgvision.cluster_passes c WHERE c.model_id = m.model_id AND c.finished_at IS NULL;
    IF FOUND THEN
        IF p.mode = cluster_start.mode THEN
            RETURN p;
        END IF;
        DELETE FROM pgvision.cluster_edges e WHERE e.pass_id = p.pass_id;
        UPDATE pgvision.cluster_passes c SET phase = 'abandoned', finished_at = now() WHERE c.pass_id = p.pass_id;
    END IF;
    INSERT INTO pgvision.cluster_passes (model_id, mode, max_distance, min_faces, neighbours, phase, total)
    VALUES (m.model_id, cluster_start.mode, dist, cluster_start.min_faces, cluster_start.neighbours,
            CASE cluster_start.mode WHEN 'full' THEN 'neighbours' ELSE 'incremental' END,
            CASE cluster_start.mode
                WHEN 'full' THEN (SELECT count(*) FROM pgvision.face_embeddings e
                                  JOIN pgvision.faces f ON f.face_id = e.face_id
                                  WHERE e.model_id = m.model_id AND NOT f.ignored)
                ELSE (SELECT count(*) FROM pgvision.faces f
                      WHERE f.identity_id IS NULL AND NOT f.ignored
                        AND EXISTS (SELECT 1 FROM pgvision.face_embeddings e WHERE e.model_id = m.model_id AND e.face_id = f.face_id)
                        AND NOT EXISTS (SELECT 1 FROM pgvision.cluster_deferred d
                                        WHERE d.model_id = m.model_id AND d.face_id = f.face_id))
            END)
    RETURNING * INTO p;
    RETURN p;
END
$fn$;

COMMENT ON FUNCTION pgvision.cluster_start(text, text, real, integer, integer) IS
'Open (or resume) a clustering pass of a face model: mode incremental (unassigned faces join or form people) or full (every face not placed by hand, again; names kept by overlap). Run it with cluster_step until phase = done, or use cluster_faces. '
'Fails (SQLSTATE): 22004 NULL mode; 22023 bad mode, max_distance, min_faces or neighbours, an image model; 42704 unknown model; 55000 no face model loaded yet.';
