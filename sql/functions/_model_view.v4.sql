-- pgvision._model_view() -> trigger (AFTER INSERT OR DELETE OR UPDATE OF kind, dims, metric,
--   index_method, quantization ON pgvision.models, per row)
-- v4: a free view name is always found. Names that differ only by case or punctuation
--   (coll, COLL, coll!) share a base name, and the fallback '<base>_<model_id>' could be
--   taken too (a model named coll_9 owns vectors_coll_9): the fallback now takes the first
--   of '<base>_<model_id>', '<base>_<model_id>_2', '<base>_<model_id>_3', ... that no
--   relation uses. v3: views are security_invoker (row-level security of the reader applies).
--
-- Purpose: one view per model for hand-written SQL and BI tools, created with the model's
--   row, rebuilt when the model's index changes (kind, dims, metric, index method or
--   quantization) and dropped with the row: pgvision.vectors_<name> (name lowercased, every
--   character other than a-z and 0-9 -> '_'; when that name is taken by another relation, or
--   longer than 63 bytes, '_<model_id>' is appended to its first 50 characters, then '_2',
--   '_3', ... until no relation has the name). Its name is stored in models.view_name and
--   kept when the view is rebuilt.
-- Columns: image models: image_id, uri, label, metadata, embedding;
--          face models:  face_id, image_id, uri, label, identity, metadata, embedding;
--   binary-quantized models also: embedding_binary.
--   embedding is typed as the expression of the model's partial ANN index: vector(dims), or
--   halfvec(dims) for quantization 'halfvec' and above 2,000 dims; so
--   `ORDER BY embedding <=> $1 LIMIT k` (<-> for l2, <#> for inner product) on the view uses
--   that index. A binary-quantized model's index is a Hamming index of
--   binary_quantize(embedding::vector(dims))::bit(dims), which is embedding_binary (bit(dims));
--   `ORDER BY embedding_binary <~> binary_quantize($1::vector(dims))::bit(dims) LIMIT n` uses
--   it, and the candidates are re-ranked by `embedding <=> $1` (pgvector README, "Binary
--   Quantization"); the view's COMMENT gives the statement.
-- Rights: SECURITY DEFINER (the schema owner), so that pgvision_loader, which may not
--   create objects, registers models and changes their index; the view is granted SELECT to
--   pgvision_reader and pgvision_loader. The trigger function cannot be called directly.
-- Fails: a rebuild when the user created objects that depend on the view (a view over it):
--   SQLSTATE 2BP01 naming the view; drop those objects, change the index, recreate them.
CREATE OR REPLACE FUNCTION pgvision._model_view()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path FROM CURRENT
AS $fn$
DECLARE
    base text;
    vname text;
    typ text;
    extra text := '';
    usage text;
    op text;
    n integer := 1;
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') AND OLD.view_name IS NOT NULL THEN
        BEGIN
            EXECUTE format('DROP VIEW IF EXISTS pgvision.%I', OLD.view_name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE EXCEPTION 'view pgvision.% has objects that depend on it, so it cannot follow the new index of model %',
                OLD.view_name, quote_literal(OLD.name)
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = 'drop the objects built on the view, change the index, then recreate them';
        END;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.view_name IS NOT NULL THEN
        vname := OLD.view_name;
    ELSE
        base := 'vectors_' || regexp_replace(lower(NEW.name), '[^a-z0-9]', '_', 'g');
        vname := base;
        IF octet_length(vname) > 63
           OR to_regclass(format('pgvision.%I', vname)) IS NOT NULL THEN
            vname := left(base, 50) || '_' || NEW.model_id;
            WHILE to_regclass(format('pgvision.%I', vname)) IS NOT NULL LOOP
                n := n + 1;
                vname := left(base, 50) || '_' || NEW.model_id || '_' || n;
            END LOOP;
        END IF;
    END IF;
    typ := CASE WHEN NEW.dims > 2000 OR NEW.quantization = 'halfvec' THEN 'halfvec' ELSE 'vector' END;
    op := CASE NEW.metric WHEN 'cosine' THEN '<=>' WHEN 'l2' THEN '<->' ELSE '<#>' END;
    IF NEW.quantization = 'binary' THEN
        extra := format(', (@extschema:vector@.binary_quantize(e.embedding::@extschema:vector@.vector(%1$s))::bit(%1$s)) '
                        'AS embedding_binary', NEW.dims);
        usage := format('its index is binary: SELECT * FROM (SELECT * FROM pgvision.%1$I ORDER BY embedding_binary <~> '
                        'binary_quantize($1::vector(%2$s))::bit(%2$s) LIMIT 100) c ORDER BY c.embedding %3$s $1 LIMIT k '
                        'uses it (candidates re-ranked at full precision).', vname, NEW.dims, op);
    ELSE
        usage := format('ORDER BY embedding %s $1 LIMIT k uses its index.', op);
    END IF;
    IF NEW.kind = 'image' THEN
        EXECUTE format(
            'CREATE VIEW pgvision.%I WITH (security_invoker = true) AS '
            'SELECT e.image_id, i.uri, i.label, i.metadata, '
            '(e.embedding::@extschema:vector@.%s(%s)) AS embedding%s '
            'FROM pgvision.image_embeddings e JOIN pgvision.images i ON i.image_id = e.image_id '
            'WHERE e.model_id = %s',
            vname, typ, NEW.dims, extra, NEW.model_id);
    ELSE
        EXECUTE format(
            'CREATE VIEW pgvision.%I WITH (security_invoker = true) AS '
            'SELECT e.face_id, f.image_id, i.uri, i.label, d.name AS identity, i.metadata, '
            '(e.embedding::@extschema:vector@.%s(%s)) AS embedding%s '
            'FROM pgvision.face_embeddings e JOIN pgvision.faces f ON f.face_id = e.face_id '
            'JOIN pgvision.images i ON i.image_id = f.image_id '
            'LEFT JOIN pgvision.identities d ON d.identity_id = f.identity_id '
            'WHERE e.model_id = %s',
            vname, typ, NEW.dims, extra, NEW.model_id);
    END IF;
    EXECUTE format('COMMENT ON VIEW pgvision.%I IS %L', vname,
                   format('Vectors of model %s (%s, %s dims, %s, %s index, quantization %s): %s',
                          quote_literal(NEW.name), NEW.kind, NEW.dims, NEW.metric, NEW.index_method,
                          NEW.quantization, usage));
    EXECUTE format('GRANT SELECT ON pgvision.%I TO pgvision_reader, pgvision_loader', vname);
    IF NEW.view_name IS DISTINCT FROM vname THEN
        UPDATE pgvision.models SET view_name = vname WHERE model_id = NEW.model_id;
    END IF;
    RETURN NEW;
END
$fn$;

COMMENT ON FUNCTION pgvision._model_view() IS
'Internal trigger on pgvision.models: creates pgvision.vectors_<model> when a model is registered, rebuilds it when the model''s index (kind, dims, metric, method, quantization) changes so that ORDER BY embedding <op> $1 LIMIT k keeps using the index, drops it with the model; views are security_invoker (row-level security of the reader applies); a name taken by another relation (models whose names differ only by case) gets vectors_<model>_<model_id>[_n].';
