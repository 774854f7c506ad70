-- Undo the roles in this database (v2, issue 8). A role is dropped only when no other
-- database of the cluster still grants it something (as v1) AND no role is a member of it:
-- a login role granted pgvision_reader keeps that membership through a downgrade to base
-- and a new upgrade (roles.v*.sql create the roles only when absent). Drop such a kept role
-- yourself once nobody needs it: the NOTICE names its members.
DO $roles$
DECLARE
    r text;
    members text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pgvision_reader', 'pgvision_loader'] LOOP
        IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            EXECUTE format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), r);
            SELECT string_agg(quote_ident(m.rolname), ', ' ORDER BY m.rolname) INTO members
            FROM pg_auth_members a JOIN pg_roles m ON m.oid = a.member
            WHERE a.roleid = (SELECT oid FROM pg_roles WHERE rolname = r);
            IF members IS NOT NULL THEN
                RAISE NOTICE 'role % kept: % still member(s) of it', r, members;
                CONTINUE;
            END IF;
            BEGIN
                EXECUTE format('DROP ROLE %I', r);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'role % kept: another database still grants it privileges', r;
            END;
        END IF;
    END LOOP;
END
$roles$;
