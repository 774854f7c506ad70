-- pgvision._faces_assigned_by() -> trigger (BEFORE INSERT OR UPDATE OF identity_id ON pgvision.faces,
--   FOR EACH ROW)
--
-- Purpose: keeps faces.assigned_by true to who placed a face in a person. A face given an
--   identity by any writer other than a clustering pass (pgvision enroll, faces load
--   --identity-from, a hand-written UPDATE, the people_* verbs) is marked 'hand', and no
--   clustering pass ever moves a 'hand' face. A face whose identity becomes NULL loses its
--   mark. A clustering pass marks its own assignments 'cluster': it sets the transaction-local
--   setting pgvision.cluster_pass to its pass_id and writes assigned_by = 'cluster' itself.
--   The setting only chooses between the two marks; it grants nothing (the writer still needs
--   UPDATE on faces).
-- Rule, on an INSERT or an UPDATE that changes identity_id without naming assigned_by:
--   identity_id NULL -> assigned_by NULL; otherwise 'cluster' when NEW.assigned_by = 'cluster'
--   inside a clustering pass, else 'hand'.
-- Fails: never (a trigger).
CREATE OR REPLACE FUNCTION pgvision._faces_assigned_by()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.identity_id IS NOT DISTINCT FROM OLD.identity_id THEN
            RETURN NEW;
        END IF;
    END IF;
    IF NEW.identity_id IS NULL THEN
        NEW.assigned_by := NULL;
    ELSIF NEW.assigned_by = 'cluster' AND coalesce(current_setting('pgvision.cluster_pass', true), '') <> '' THEN
        NEW.assigned_by := 'cluster';
    ELSE
        NEW.assigned_by := 'hand';
    END IF;
    RETURN NEW;
END
$fn$;

COMMENT ON FUNCTION pgvision._faces_assigned_by() IS
'Internal trigger on pgvision.faces: a face given an identity outside a clustering pass is marked assigned_by = ''hand'' (never moved by clustering); NULL identity, NULL mark.';
