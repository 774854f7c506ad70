-- pgvision._sync_templates() -> trigger  [v3] (AFTER INSERT / UPDATE / DELETE ... FOR EACH STATEMENT
--   on pgvision.face_embeddings, AFTER UPDATE / DELETE on pgvision.faces; transition tables
--   new_rows / old_rows; AFTER TRUNCATE on both)
-- v3: a template row carries its identity's collection_id (pgvision.identity_templates
--   .collection_id, the key of its row-level security policy), read from pgvision.identities
--   in the same statement.
--
-- Purpose: keeps pgvision.identity_templates equal to the mean of each
--   enrolled identity's gallery embeddings, per face model, in the same transaction as the
--   change: the template that identify's rule compares against (an identity's distance =
--   min(nearest gallery face, mean of its gallery embeddings)). identify searches the
--   templates through their own HNSW index, so that an identity that wins through its
--   template is found even when none of its photos is among the nearest faces the photo
--   index returns.
-- What it recomputes: every identity whose gallery changed in the statement: embeddings
--   inserted, updated or deleted (face_embeddings), a face enrolled, moved to another
--   identity or un-enrolled (faces.identity_id changed), faces deleted (also by a cascade
--   from images, or identities deleted: ON DELETE SET NULL is an UPDATE of faces). For each
--   such identity its rows are replaced by avg(embedding) and count per face model
--   (pgvector's avg: float8 sums, the same aggregate identify v4 computed per call); an
--   identity without gallery embeddings in a model has no row for it.
-- Plan: a COPY batch arrives as one statement: identities are found by primary-key lookups
--   of faces (scalar subqueries, no join the planner could turn into a scan of faces), and
--   each identity's gallery is read through faces_identity and face_embeddings' primary key
--   (model_id, face_id), whatever the statistics (right after a bulk load there are none).
-- Concurrency: transaction-scoped advisory locks serialise writers of the same identity;
--   each recomputation then reads with a new snapshot (READ COMMITTED), so two loaders
--   enrolling photos of one person at once cannot leave a template that misses one of them.
--   v2 (the change from v1): the number of locks a transaction holds is bounded by
--   construction. v1 took one lock per identity, and a statement touching ~10,000
--   identities (deleting a face model with 100,000 enrolled people, a bulk enrolment)
--   exhausted the server's shared lock table ("out of shared memory", max_locks_per_
--   transaction). v2 maps identities to 1,024 buckets (class 'pgvt', key = hashint8(id) &
--   1023, taken in key order) under an intention lock (class 'pgvT', key 0): a statement
--   touching at most 64 buckets takes the intention lock shared and its buckets
--   exclusively; a larger one takes the intention lock exclusively and no bucket (it
--   excludes every other writer of templates until it commits). A transaction therefore
--   holds at most 1,025 advisory locks, whatever it changes. The classic intention-lock
--   scheme (Gray et al., "Granularity of locks", 1976). A transaction that ran a small
--   statement and then a bulk one upgrades shared to exclusive: with another such
--   transaction at once, PostgreSQL's deadlock detector aborts one of them (retry it).
-- Rights: SECURITY DEFINER (the schema owner): loaders write faces and embeddings, not the
--   templates. Not callable directly (a trigger function).
CREATE OR REPLACE FUNCTION pgvision._sync_templates()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    c_lock_class constant integer := 1885828724;    -- 'pgvt': one lock per bucket of identities
    c_intent_class constant integer := 1885828692;  -- 'pgvT': the intention lock
    c_buckets constant integer := 1024;             -- a power of two (the key is a bit mask)
    c_bulk constant integer := 64;                  -- buckets above which a statement locks them all
    keys integer[];
    ids bigint[];
    key integer;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN  -- face_embeddings or faces emptied: no gallery is left
        DELETE FROM pgvision.identity_templates;
        RETURN NULL;
    END IF;
    IF TG_TABLE_NAME = 'face_embeddings' THEN
        IF TG_OP = 'INSERT' THEN
            ids := ARRAY(SELECT DISTINCT s.identity_id FROM (
                             SELECT (SELECT f.identity_id FROM pgvision.faces f WHERE f.face_id = n.face_id) AS identity_id
                             FROM new_rows n) s
                         WHERE s.identity_id IS NOT NULL);
        ELSIF TG_OP = 'DELETE' THEN
            -- faces deleted in the same statement (a cascade) are gone here: the trigger on
            -- faces recomputes their identities.
            ids := ARRAY(SELECT DISTINCT s.identity_id FROM (
                             SELECT (SELECT f.identity_id FROM pgvision.faces f WHERE f.face_id = o.face_id) AS identity_id
                             FROM old_rows o) s
                         WHERE s.identity_id IS NOT NULL);
        ELSE
            ids := ARRAY(SELECT DISTINCT s.identity_id FROM (
                             SELECT (SELECT f.identity_id FROM pgvision.faces f WHERE f.face_id = x.face_id) AS identity_id
                             FROM (SELECT n.face_id FROM new_rows n UNION SELECT o.face_id FROM old_rows o) x) s
                         WHERE s.identity_id IS NOT NULL);
        END IF;
    ELSIF TG_OP = 'UPDATE' THEN  -- faces: only a changed identity_id changes a gallery
        ids := ARRAY(SELECT DISTINCT x.identity_id FROM (
                         SELECT o.identity_id, n.identity_id AS new_identity_id
                         FROM old_rows o JOIN new_rows n ON n.face_id = o.face_id
                         WHERE o.identity_id IS DISTINCT FROM n.identity_id) c
                     CROSS JOIN LATERAL (VALUES (c.identity_id), (c.new_identity_id)) x(identity_id)
                     WHERE x.identity_id IS NOT NULL);
    ELSE  -- faces, DELETE
        ids := ARRAY(SELECT DISTINCT o.identity_id FROM old_rows o WHERE o.identity_id IS NOT NULL);
    END IF;
    IF cardinality(ids) = 0 THEN
        RETURN NULL;
    END IF;
    keys := ARRAY(SELECT DISTINCT pg_catalog.hashint8(x) & (c_buckets - 1) FROM unnest(ids) x ORDER BY 1);
    IF cardinality(keys) > c_bulk THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(c_intent_class, 0);
    ELSE
        PERFORM pg_catalog.pg_advisory_xact_lock_shared(c_intent_class, 0);
        FOREACH key IN ARRAY keys LOOP
            PERFORM pg_catalog.pg_advisory_xact_lock(c_lock_class, key);
        END LOOP;
    END IF;
    -- One statement each (v1 looped per identity): the lateral aggregate cannot be pulled
    -- up, so each identity's gallery is still read by index lookups.
    DELETE FROM pgvision.identity_templates t WHERE t.identity_id = ANY (ids);
    INSERT INTO pgvision.identity_templates (identity_id, model_id, template, photos, collection_id)
    SELECT u.i, mo.model_id, s.template, s.photos, d.collection_id
    FROM unnest(ids) u(i)
    JOIN pgvision.identities d ON d.identity_id = u.i
    CROSS JOIN pgvision.models mo
    CROSS JOIN LATERAL (
        SELECT @extschema:vector@.avg(x.embedding) AS template, count(x.embedding)::integer AS photos
        FROM pgvision.faces f
        CROSS JOIN LATERAL (SELECT e.embedding FROM pgvision.face_embeddings e
                            WHERE e.model_id = mo.model_id AND e.face_id = f.face_id OFFSET 0) x
        WHERE f.identity_id = u.i) s
    WHERE mo.kind = 'face' AND s.photos > 0;
    RETURN NULL;
END
$fn$;

COMMENT ON FUNCTION pgvision._sync_templates() IS
'Internal trigger on face_embeddings and faces: keeps identity_templates (mean gallery embedding per identity and face model) in step with the gallery, in the same transaction.';
