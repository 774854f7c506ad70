-- Roles of the SQL API.
--   pgvision_reader: search functions and views; reads the tables; may not write.
--   pgvision_loader: what `pgvision load` needs: insert images, faces, embeddings, models.
-- Roles are cluster-wide: created here when absent. Grant them to login roles, e.g.
--   CREATE ROLE metabase LOGIN PASSWORD '...' IN ROLE pgvision_reader;
-- The functions run with the caller's rights (SECURITY INVOKER) and fix their search_path.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgvision_reader') THEN
        CREATE ROLE pgvision_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pgvision_loader') THEN
        CREATE ROLE pgvision_loader NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO pgvision_reader, pgvision_loader', current_database());
    EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO pgvision_loader', current_database());
END
$roles$;

GRANT USAGE ON SCHEMA pgvision TO pgvision_reader, pgvision_loader;
GRANT SELECT ON ALL TABLES IN SCHEMA pgvision TO pgvision_reader, pgvision_loader;
GRANT INSERT, UPDATE ON pgvision.models, pgvision.images, pgvision.identities, pgvision.faces,
    pgvision.face_scans, pgvision.image_embeddings, pgvision.face_embeddings, pgvision.calibrations
    TO pgvision_loader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgvision TO pgvision_reader, pgvision_loader;
