-- pgvision._resolve_model(model text, kind text) -> pgvision.models
-- v2 (issue 8): pgvector's types, operators and functions schema-qualified
--   (@extschema:vector@), search_path pg_catalog, pgvision, pg_temp: objects other roles
--   create in pgvector's schema can no longer shadow a call.
--
-- Purpose: the registered model a search function works on.
-- Arguments:
--   model  name in pgvision.models.name; NULL means the default model of that kind
--          (models.is_default, else the only model of that kind).
--   kind   'image' or 'face'.
-- Returns: the models row.
-- Fails:  42704 undefined_object        unknown model name (the message lists the known ones)
--         55000 object_not_in_prerequisite_state  no model of that kind loaded yet
--         22023 invalid_parameter_value  the model exists but is of the other kind
CREATE OR REPLACE FUNCTION pgvision._resolve_model(model text, kind text)
RETURNS pgvision.models
LANGUAGE plpgsql STABLE
SET search_path FROM CURRENT
AS $fn$
DECLARE
    m pgvision.models;
    n integer;
BEGIN
    IF model IS NULL THEN
        SELECT * INTO m FROM pgvision.models x WHERE x.kind = _resolve_model.kind AND x.is_default;
        IF NOT FOUND THEN
            SELECT count(*) INTO n FROM pgvision.models x WHERE x.kind = _resolve_model.kind;
            IF n = 1 THEN
                SELECT * INTO m FROM pgvision.models x WHERE x.kind = _resolve_model.kind;
            ELSIF n = 0 THEN
                RAISE EXCEPTION 'no % model is loaded yet', kind
                    USING ERRCODE = 'object_not_in_prerequisite_state',
                          HINT = CASE kind WHEN 'image' THEN 'load images first: pgvision load PATH'
                                           ELSE 'load faces first: pgvision faces load PATH' END;
            ELSE
                RAISE EXCEPTION '% % models are loaded and none is the default: pass model => one of %',
                    n, kind, (SELECT string_agg(quote_literal(x.name), ', ' ORDER BY x.name)
                              FROM pgvision.models x WHERE x.kind = _resolve_model.kind)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        END IF;
        RETURN m;
    END IF;
    SELECT * INTO m FROM pgvision.models x WHERE x.name = model;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'unknown model %: the % models are %', quote_literal(model), kind,
            coalesce((SELECT string_agg(quote_literal(x.name), ', ' ORDER BY x.name)
                      FROM pgvision.models x WHERE x.kind = _resolve_model.kind), 'none yet')
            USING ERRCODE = 'undefined_object';
    END IF;
    IF m.kind <> kind THEN
        RAISE EXCEPTION 'model % is a % model, not a % model', quote_literal(model), m.kind, kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN m;
END
$fn$;

COMMENT ON FUNCTION pgvision._resolve_model(text, text) IS
'Internal: the pgvision.models row for a model name (NULL = the default model of that kind); raises 42704 for an unknown name.';
