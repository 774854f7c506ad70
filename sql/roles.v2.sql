-- Roles of the SQL API, v2 (issue 8): pgvision_loader gets UPDATE only where the loader
-- updates, column by column; everything else is as in roles.v1.sql.
--   pgvision_reader: search functions and views; reads the tables; may not write.
--   pgvision_loader: what `pgvision load`, `faces load`, `enroll` and `calibrate` run:
--     INSERT   models, images, identities, faces, face_scans, image_embeddings,
--              face_embeddings, calibrations (loads; ON CONFLICT DO NOTHING needs INSERT only)
--     UPDATE   faces(identity_id)                    enroll assigns gallery faces
--              face_scans(faces, scanned_at)         faces load: INSERT ... ON CONFLICT DO UPDATE
--              models(threshold, min_margin)         calibrate stores the calibrated threshold
--              models(ivfflat_lists, probes)         an IVFFlat index sized once rows exist
--     nothing else: no UPDATE of images, embeddings, identities, calibrations; no DELETE,
--     no TRUNCATE; no DDL (indexes are built by the schema's owner: pgvision db index).
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
REVOKE UPDATE ON ALL TABLES IN SCHEMA pgvision FROM pgvision_loader;
GRANT INSERT ON pgvision.models, pgvision.images, pgvision.identities, pgvision.faces,
    pgvision.face_scans, pgvision.image_embeddings, pgvision.face_embeddings, pgvision.calibrations
    TO pgvision_loader;
GRANT UPDATE (identity_id) ON pgvision.faces TO pgvision_loader;
GRANT UPDATE (faces, scanned_at) ON pgvision.face_scans TO pgvision_loader;
GRANT UPDATE (threshold, min_margin, ivfflat_lists, probes) ON pgvision.models TO pgvision_loader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA pgvision TO pgvision_reader, pgvision_loader;
