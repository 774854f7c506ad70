-- pgvision._duplicate_pairs(m, tier, max_distance, max_hash_distance, k, only_id)
--   -> TABLE (a_id bigint, b_id bigint, distance double precision, hash_distance integer)
--
-- Purpose: the pairs of images of model m that are duplicates in the given tier, found
--   through indexes, never by comparing all pairs. Candidates per image:
--   1. its k nearest embeddings of model m through the model's ANN index (a LATERAL
--      ORDER BY <index expression> LIMIT k+1 per image, the form pgvector's HNSW / IVFFlat
--      index answers; binary-quantized models: ef_search Hamming candidates re-ranked);
--   2. tier 'same' only: up to k images with the same whole-image pHash, through the B-tree
--      index images_phash (equality), which finds re-encodings (most have hash distance 0)
--      even among many near-identical embeddings. Near but unequal hashes (crops) come
--      through 1. An HNSW index on phash (bit_hamming_ops) would give Hamming neighbours but
--      cost every loaded row a graph insert: 140-200 rows/s here against 40,000-48,000 with
--      the B-tree (docs/duplicates.md).
--   Each candidate pair is then tested on its exact distances:
--     same:    embedding distance <= max_distance AND _hash_distance <= max_hash_distance
--     similar: embedding distance <= max_distance
-- Arguments:
--   m                  the image model (pgvision.models row).
--   tier               'same' or 'similar' (checked by the caller).
--   max_distance       embedding distance in the model's metric (cosine: 0 = same
--                      direction, 2 = opposite), finite, >= 0 (checked by the caller).
--   max_hash_distance  Hamming bits 0..64 (tier 'same'; checked by the caller).
--   k                  candidates per image and per index, 1..1000.
--   only_id            NULL: every image of the model; else only pairs with this image.
-- Returns: each pair once with a_id < b_id, its embedding distance and hash distance
--   (NULL when either image has no hash yet).
-- Rights: SECURITY INVOKER (the caller's row-level security applies to every table read).
-- Settings changed (hnsw.ef_search, ivfflat.probes, enable_sort) are restored before it returns.
CREATE OR REPLACE FUNCTION pgvision._duplicate_pairs(
    m pgvision.models,
    tier text,
    max_distance double precision,
    max_hash_distance integer,
    k integer,
    only_id bigint DEFAULT NULL)
RETURNS TABLE (a_id bigint, b_id bigint, distance double precision, hash_distance integer)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    typ text := CASE WHEN m.dims > 2000 OR m.quantization = 'halfvec' THEN '@extschema:vector@.halfvec'
                     ELSE '@extschema:vector@.vector' END;
    op text := CASE m.metric WHEN 'cosine' THEN 'OPERATOR(@extschema:vector@.<=>)'
                             WHEN 'l2' THEN 'OPERATOR(@extschema:vector@.<->)'
                             ELSE 'OPERATOR(@extschema:vector@.<#>)' END;
    ka text;
    kb text;
    ord text;
    lim integer;
    emb_pairs text;
    hash_pairs text;
    q text;
    old_ef text := current_setting('hnsw.ef_search', true);
    old_probes text := current_setting('ivfflat.probes', true);
    old_sort text := current_setting('enable_sort');
BEGIN
    ka := format('a.embedding::%s(%s)', typ, m.dims);
    kb := format('b.embedding::%s(%s)', typ, m.dims);
    IF m.quantization = 'binary' THEN
        ord := format('@extschema:vector@.binary_quantize(%1$s)::bit(%3$s) OPERATOR(@extschema:vector@.<~>) '
                      '@extschema:vector@.binary_quantize(%2$s)::bit(%3$s)', kb, ka, m.dims);
        lim := least(1000, greatest(m.ef_search, k + 1));
    ELSE
        ord := format('%s %s %s', kb, op, ka);
        lim := k + 1;
    END IF;
    -- 1. Embedding neighbours through the model's index; the exact distance of each.
    emb_pairs := format(
        'SELECT a.image_id AS x, n.image_id AS y FROM pgvision.image_embeddings a'
        ' CROSS JOIN LATERAL (SELECT b.image_id FROM pgvision.image_embeddings b'
        '   WHERE b.model_id = %1$s ORDER BY %2$s LIMIT %3$s) n'
        ' WHERE a.model_id = %1$s AND n.image_id <> a.image_id AND ($1::bigint IS NULL OR a.image_id = $1)',
        m.model_id, ord, lim);
    -- 2. Images with an equal whole-image pHash through images_phash (tier same).
    IF tier = 'same' THEN
        hash_pairs := format(
            ' UNION ALL SELECT a.image_id, n.image_id FROM pgvision.images a'
            ' CROSS JOIN LATERAL (SELECT b.image_id FROM pgvision.images b WHERE b.phash = a.phash'
            '   AND b.image_id <> a.image_id ORDER BY b.image_id LIMIT %1$s) n'
            ' WHERE a.phash IS NOT NULL AND ($1::bigint IS NULL OR a.image_id = $1)',
            k);
    ELSE
        hash_pairs := '';
    END IF;
    q := format(
        'WITH c AS (SELECT DISTINCT least(x, y) AS a_id, greatest(x, y) AS b_id FROM (%1$s%2$s) s),'
        ' d AS (SELECT c.a_id, c.b_id, (ea.embedding %3$s eb.embedding)::float8 AS distance FROM c'
        '   JOIN pgvision.image_embeddings ea ON ea.model_id = %4$s AND ea.image_id = c.a_id'
        '   JOIN pgvision.image_embeddings eb ON eb.model_id = %4$s AND eb.image_id = c.b_id)'
        ' SELECT d.a_id, d.b_id, d.distance, h.hash_distance FROM d'
        ' JOIN pgvision.images ia ON ia.image_id = d.a_id JOIN pgvision.images ib ON ib.image_id = d.b_id'
        ' CROSS JOIN LATERAL (SELECT pgvision._hash_distance(ia.phash, ia.phash_crops, ib.phash, ib.phash_crops)'
        '   AS hash_distance) h'
        ' WHERE d.distance <= $2 AND ($3 = ''similar'' OR h.hash_distance <= $4)',
        emb_pairs, hash_pairs, op, m.model_id);
    IF m.index_method = 'hnsw' THEN
        PERFORM set_config('hnsw.ef_search', least(1000, greatest(m.ef_search, lim))::text, true);
    ELSIF m.index_method = 'ivfflat' THEN
        PERFORM set_config('ivfflat.probes', coalesce(m.probes, 1)::text, true);
    END IF;
    -- Sorting off: the index is the only ordered path for each LATERAL probe, whatever the
    -- statistics say (right after a bulk load the planner would sort the model instead).
    PERFORM set_config('enable_sort', 'off', true);
    RETURN QUERY EXECUTE q USING only_id, max_distance, tier, max_hash_distance;
    PERFORM set_config('enable_sort', old_sort, true);
    PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
    PERFORM set_config('ivfflat.probes', coalesce(old_probes, '1'), true);
END
$fn$;

COMMENT ON FUNCTION pgvision._duplicate_pairs(pgvision.models, text, double precision, integer, integer, bigint) IS
'Internal: duplicate pairs (a_id < b_id, embedding distance, hash distance) of a model in tier same or similar, candidates from the model''s ANN index and equal pHashes (B-tree). Use duplicate_groups / duplicates_of instead.';
