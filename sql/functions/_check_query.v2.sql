-- pgvision._check_query(query @extschema:vector@.vector, m pgvision.models, k integer, ef_search integer) -> void
-- v2 (issue 8): pgvector's types, operators and functions schema-qualified
--   (@extschema:vector@), search_path pg_catalog, pgvision, pg_temp: objects other roles
--   create in pgvector's schema can no longer shadow a call.
--
-- Purpose: the argument checks shared by the search functions.
-- Arguments:
--   query  the probe embedding; must have m.dims dimensions.
--   m      the model (from _resolve_model).
--   k      number of rows asked for, 1..1000.
--   ef_search  HNSW candidate list size, NULL or 1..1000.
-- Fails:  22023 invalid_parameter_value  k out of 1..1000, query of the wrong dimension, a
--                                        zero query (cosine models) or one whose squared
--                                        norm overflows float4 (v2)
--         22004 null_value_not_allowed   query or k is NULL
CREATE OR REPLACE FUNCTION pgvision._check_query(
    query @extschema:vector@.vector, m pgvision.models, k integer, ef_search integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path FROM CURRENT
AS $fn$
DECLARE
    sq double precision;
BEGIN
    IF k IS NULL THEN
        RAISE EXCEPTION 'k must not be NULL: pass a number of rows between 1 and 1000'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, got %', k
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ef_search IS NOT NULL AND (ef_search < 1 OR ef_search > 1000) THEN
        RAISE EXCEPTION 'ef_search must be between 1 and 1000, got %', ef_search
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF query IS NULL THEN
        RAISE EXCEPTION 'query must not be NULL: pass a %-d embedding from model %', m.dims, quote_literal(m.name)
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF @extschema:vector@.vector_dims(query) <> m.dims THEN
        RAISE EXCEPTION 'model % gives %-d vectors but the query has %: pass a %-d query, or the model that made it',
            quote_literal(m.name), m.dims, @extschema:vector@.vector_dims(query), m.dims
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- pgvector computes distances in float4: a query whose squared norm overflows float4
    -- (values around 1e19 and up) gives Infinity / NaN distances, and a zero query has no
    -- cosine distance (NaN). Both are refused rather than ranked.
    sq := -(query OPERATOR(@extschema:vector@.<#>) query);
    IF NOT (sq < 'Infinity'::float8) THEN
        RAISE EXCEPTION 'query values are too large (its squared norm overflows float4): pass an embedding with values well below 1e19, e.g. normalized'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF m.metric = 'cosine' AND sq = 0 THEN
        RAISE EXCEPTION 'query is a zero vector, which has no cosine distance to anything: pass a non-zero embedding'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$fn$;

COMMENT ON FUNCTION pgvision._check_query(@extschema:vector@.vector, pgvision.models, integer, integer) IS
'Internal: checks k and ef_search (1..1000), NULL query, query dimension against the model, zero (cosine) or overflowing query; raises 22023 / 22004.';
