-- pgvision._similarity(distance double precision, metric text) -> double precision
-- v2 (issue 8): pgvector's types, operators and functions schema-qualified
--   (@extschema:vector@), search_path pg_catalog, pgvision, pg_temp: objects other roles
--   create in pgvector's schema can no longer shadow a call.
--
-- Purpose: one "higher is closer" score per metric, for people and BI tools.
--   cosine         1 - cosine distance = cosine similarity, -1..1 (1 = same direction)
--   inner_product  the inner product itself (pgvector's <#> is its negative)
--   l2             1 / (1 + L2 distance), 0..1 (1 = same vector)
-- Thresholds in pgvision are distances (the units published thresholds use: dlib L2 0.6,
-- DeepFace's cosine distances); similarity is for display and sorting only.
CREATE OR REPLACE FUNCTION pgvision._similarity(distance double precision, metric text)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE metric WHEN 'cosine' THEN 1 - distance
                   WHEN 'inner_product' THEN -distance
                   ELSE 1 / (1 + distance) END;

COMMENT ON FUNCTION pgvision._similarity(double precision, text) IS
'Internal: similarity from distance: cosine 1-d, inner product -d, L2 1/(1+d).';
