-- pgvision._model_view() -> trigger (AFTER INSERT OR DELETE ON pgvision.models, per row)
--
-- Purpose: one view per model for hand-written SQL and BI tools, created and dropped with
--   the model's row: pgvision.vectors_<name> (name lowercased, every character other than
--   a-z and 0-9 -> '_'; when that name is taken by another relation, or longer than 63
--   bytes, '_<model_id>' is appended to its first 50 characters). Its name is stored in
--   models.view_name.
-- Columns: image models: image_id, uri, label, metadata, embedding;
--          face models:  face_id, image_id, uri, label, identity, metadata, embedding;
--   embedding is typed as the model's vector(dims) (halfvec(dims) above 2,000 dims), the
--   same expression as the model's partial ANN index, and the rows are filtered to the
--   model, so `ORDER BY embedding <=> $1 LIMIT k` on the view can use that index.
-- Rights: SECURITY DEFINER (the schema owner), so that pgvision_loader, which may not
--   create objects, registers models; the view is granted SELECT to pgvision_reader and
--   pgvision_loader. The trigger function cannot be called directly.
CREATE OR REPLACE FUNCTION pgvision._model_view()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    base text;
    vname text;
    typ text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.view_name IS NOT NULL THEN
            EXECUTE format('DROP VIEW IF EXISTS pgvision.%I', OLD.view_name);
        END IF;
        RETURN OLD;
    END IF;
    base := 'vectors_' || regexp_replace(lower(NEW.name), '[^a-z0-9]', '_', 'g');
    vname := base;
    IF octet_length(vname) > 63
       OR to_regclass(format('pgvision.%I', vname)) IS NOT NULL THEN
        vname := left(base, 50) || '_' || NEW.model_id;
    END IF;
    typ := CASE WHEN NEW.dims > 2000 THEN 'halfvec' ELSE 'vector' END;
    IF NEW.kind = 'image' THEN
        EXECUTE format(
            'CREATE VIEW pgvision.%I AS '
            'SELECT e.image_id, i.uri, i.label, i.metadata, '
            '(e.embedding::@extschema:vector@.%s(%s)) AS embedding '
            'FROM pgvision.image_embeddings e JOIN pgvision.images i ON i.image_id = e.image_id '
            'WHERE e.model_id = %s',
            vname, typ, NEW.dims, NEW.model_id);
    ELSE
        EXECUTE format(
            'CREATE VIEW pgvision.%I AS '
            'SELECT e.face_id, f.image_id, i.uri, i.label, d.name AS identity, i.metadata, '
            '(e.embedding::@extschema:vector@.%s(%s)) AS embedding '
            'FROM pgvision.face_embeddings e JOIN pgvision.faces f ON f.face_id = e.face_id '
            'JOIN pgvision.images i ON i.image_id = f.image_id '
            'LEFT JOIN pgvision.identities d ON d.identity_id = f.identity_id '
            'WHERE e.model_id = %s',
            vname, typ, NEW.dims, NEW.model_id);
    END IF;
    EXECUTE format('COMMENT ON VIEW pgvision.%I IS %L', vname,
                   format('Vectors of model %s (%s, %s dims, %s): ORDER BY embedding <=> / <-> / <#> $1 LIMIT k uses its index.',
                          quote_literal(NEW.name), NEW.kind, NEW.dims, NEW.metric));
    EXECUTE format('GRANT SELECT ON pgvision.%I TO pgvision_reader, pgvision_loader', vname);
    UPDATE pgvision.models SET view_name = vname WHERE model_id = NEW.model_id;
    RETURN NEW;
END
$fn$;

COMMENT ON FUNCTION pgvision._model_view() IS
'Internal trigger on pgvision.models: creates pgvision.vectors_<model> when a model is registered, drops it with the model.';
