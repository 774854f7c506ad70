-- pgvision._duplicate_limits(m, tier, max_distance, max_hash_distance)
--   -> (max_distance double precision, max_hash_distance integer)
--
-- Purpose: check a duplicate query's arguments and fill in the tier's defaults.
-- Defaults (cosine distance of efficientnet-lite0 features, chosen on the calibration split
--   of bench/bench_duplicates.py --calibrate; docs/duplicates.md):
--     same:    max_distance 0.34, max_hash_distance 12 bits of 64
--     similar: max_distance 0.11
-- Arguments: as pgvision.duplicate_groups (m: the resolved image model).
-- Returns: the two limits (max_hash_distance NULL for tier similar unless given).
-- Fails (SQLSTATE): 22004 NULL tier; 22023 tier not 'same' or 'similar', max_distance not a
--   finite number >= 0, max_hash_distance outside 0..64, or no max_distance for a model
--   whose metric is not cosine (the defaults are cosine distances).
CREATE OR REPLACE FUNCTION pgvision._duplicate_limits(
    m pgvision.models,
    tier text,
    max_distance double precision,
    max_hash_distance integer,
    OUT max_distance_out double precision,
    OUT max_hash_distance_out integer)
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
BEGIN
    IF tier IS NULL THEN
        RAISE EXCEPTION 'tier must not be NULL: pass ''same'' or ''similar'''
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF tier NOT IN ('same', 'similar') THEN
        RAISE EXCEPTION 'tier must be ''same'' or ''similar'', got %', quote_literal(tier)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_distance IS NOT NULL AND NOT (max_distance >= 0 AND max_distance < 'Infinity'::float8) THEN
        RAISE EXCEPTION 'max_distance must be a finite number >= 0, got %', max_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_hash_distance IS NOT NULL AND max_hash_distance NOT BETWEEN 0 AND 64 THEN
        RAISE EXCEPTION 'max_hash_distance must be between 0 and 64 bits, got %', max_hash_distance
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_distance IS NULL AND m.metric <> 'cosine' THEN
        RAISE EXCEPTION 'model % uses % distance and the default thresholds are cosine distances: pass max_distance',
            quote_literal(m.name), m.metric
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    max_distance_out := coalesce(max_distance, CASE tier WHEN 'same' THEN 0.34 ELSE 0.11 END);
    max_hash_distance_out := coalesce(max_hash_distance, CASE tier WHEN 'same' THEN 12 END);
END
$fn$;

COMMENT ON FUNCTION pgvision._duplicate_limits(pgvision.models, text, double precision, integer) IS
'Internal: checks duplicate_groups / duplicates_of arguments and fills in the tier''s default limits.';
