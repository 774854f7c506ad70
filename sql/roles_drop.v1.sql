-- Undo roles.v1.sql in this database. The roles themselves are dropped only when no other
-- database of the cluster still grants them something (they are cluster-wide).
DO $roles$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pgvision_reader', 'pgvision_loader'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), r);
            BEGIN
                EXECUTE format('DROP ROLE %I', r);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'role % kept: another database still grants it privileges', r;
            END;
        END IF;
    END LOOP;
END
$roles$;
