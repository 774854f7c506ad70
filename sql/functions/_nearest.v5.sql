-- pgvision._nearest(m, query, k, label, filter, exclude_id, enrolled_only, ef_search, exact, collection_id)
--   -> TABLE (item_id bigint, distance double precision)
-- v5: collections. A caller under row-level security (a role granted some collections), or
--   a call that names a collection (collection_id), is a filtered search: the policy's (or
--   the collection's) condition applies after the index scan, so the walk is the bounded
--   iterative scan of filtered searches, and a collection of at most 2,000 rows of the model
--   is answered by an exact scan of its rows (through image_embeddings_collection /
--   face_embeddings_collection, (collection_id, model_id)). A named collection -- or the only
--   collection a caller under row-level security sees -- goes into the statement as a literal
--   (`AND e.collection_id = 7`), so a collection's own partial index (`WHERE model_id = 3 AND
--   collection_id = 7`, pgvision.index.ddl.ensure_collection_indexes) answers it when there is
--   one. A scoped search walks with twice the model's ef_search unless the caller passes
--   one: on a collection's own index of 10,000 (5,000) rows recall@10 was 0.956 (0.931) at the
--   model's 40 and 0.984 (0.978) at 80, the model's index over 200,000 rows 0.985 at 40
--   (docs/collections.md). Without row-level security and without a collection nothing changes.
-- v4: the walks are bounded whatever the session's settings, and binary models re-rank
--   deeper. Every iterative scan it starts (filtered searches, and binary models'
--   candidates) visits at most hnsw.max_scan_tuples = max(20,000, 5 x the rows it asks for)
--   tuples (pgvector's default is 20,000; a session may have raised it) or
--   ivfflat.max_probes = 10 x the model's probes lists: a filtered query whose filter
--   matches little, or a stranger's probe, stops there instead of walking the whole graph.
--   Binary-quantized models: the Hamming walk yields depth = min(10,000, 10 x max(ef_search,
--   k)) candidates by an iterative scan (before: ef_search, at most 1,000, which held
--   recall@10 at 0.937 at 1M x 512, docs/benchmarks.md), re-ranked by the full-precision
--   distance; the same rule as the generated _ann (_model_ann.v3.sql). Otherwise as v3:
--   plans independent of statistics (enable_sort, enable_hashjoin, enable_mergejoin off
--   while the ANN statements run), halfvec models ordered by embedding::halfvec(D).
--
-- Purpose: the k stored embeddings of model m nearest to query, nearest first. The engine
-- under search_images, similar_images, identify, identify_face and recall_at_k.
-- Arguments:
--   m              the model (pgvision.models row); m.kind picks image_embeddings or face_embeddings.
--   query          probe embedding, m.dims dimensions (checked by the caller).
--   k              rows wanted, 1..1000 (checked by the caller).
--   label          only images with this label (faces: of images with this label); NULL = all.
--   filter         only images whose metadata contains this jsonb (@>); NULL = all.
--   exclude_id     leave out this image_id / face_id (the probe itself); NULL = none.
--   enrolled_only  faces only: only gallery faces (identity_id IS NOT NULL).
--   ef_search      HNSW candidate list size; NULL = m.ef_search. Raised to k when smaller,
--                  because an HNSW scan returns at most ef_search rows (pgvector README).
--   exact          true = exact scan, no index (ground truth for recall_at_k).
--   collection_id  only rows of this collection (pgvision.collections); NULL = every row the
--                  caller may see.
-- Distance is the model's metric: cosine distance (0 = same direction, 2 = opposite), L2
-- distance (>= 0), or negative inner product (pgvector's <#>, smaller = closer).
-- How filters stay exact (pgvector applies WHERE after the index scan, so a filtered ANN
-- query can return fewer than k rows):
--   1. a filter that matches at most 2,000 rows is answered by an exact scan of those rows
--      (cheaper than walking the graph for them; the idea of Qdrant's full_scan_threshold);
--   2. otherwise the ANN scan runs with hnsw.iterative_scan / ivfflat.iterative_scan =
--      relaxed_order (pgvector 0.8) and the rows are re-sorted by distance;
--   3. if that still yields fewer than k rows, an exact scan answers instead.
-- The settings it changes (hnsw.ef_search, iterative_scan, max_scan_tuples, ivfflat.probes,
-- max_probes) are restored before it returns.
CREATE OR REPLACE FUNCTION pgvision._nearest(
    m pgvision.models,
    query @extschema:vector@.vector,
    k integer,
    label text DEFAULT NULL,
    filter jsonb DEFAULT NULL,
    exclude_id bigint DEFAULT NULL,
    enrolled_only boolean DEFAULT false,
    ef_search integer DEFAULT NULL,
    exact boolean DEFAULT false,
    collection_id integer DEFAULT NULL)
RETURNS TABLE (item_id bigint, distance double precision)
LANGUAGE plpgsql VOLATILE
-- ROWS 10: the planner's estimate of the rows returned (default 1,000). With 1,000 it
-- joined the result to images / faces by a hash join over the whole table whenever that
-- table was small enough (a few 10k rows): search_images took 2.5 ms instead of 1.0 ms on
-- 3,000 images (bench/profile_search.py). With 10 it probes the primary key per row.
ROWS 10
SET search_path FROM CURRENT
AS $fn$
DECLARE
    c_exact_below constant integer := 2000;
    tbl text := CASE m.kind WHEN 'image' THEN 'image_embeddings' ELSE 'face_embeddings' END;
    item text := CASE m.kind WHEN 'image' THEN 'image_id' ELSE 'face_id' END;
    -- pgvector's types and operators, schema-qualified (the schema is not on search_path).
    vec constant text := '@extschema:vector@.vector';
    typ text := CASE WHEN m.dims > 2000 OR m.quantization = 'halfvec' THEN '@extschema:vector@.halfvec'
                     ELSE '@extschema:vector@.vector' END;
    op text := CASE m.metric WHEN 'cosine' THEN 'OPERATOR(@extschema:vector@.<=>)' WHEN 'l2' THEN 'OPERATOR(@extschema:vector@.<->)'
                          ELSE 'OPERATOR(@extschema:vector@.<#>)' END;
    key text;
    q text;
    ord text;
    lim text;
    ann text;
    joins text := '';
    conds text;
    filtered boolean := label IS NOT NULL OR filter IS NOT NULL OR exclude_id IS NOT NULL OR enrolled_only;
    matching integer;
    ids bigint[];
    dists double precision[];
    old_ef text;
    old_hnsw_iter text;
    old_ivf_iter text;
    old_probes text;
    want text;
    old_sort text;
    old_hash text;
    old_merge text;
    old_bound text;
    old_ivf_bound text;
    deep boolean := m.quantization = 'binary';
    rows_wanted integer;
    scoped boolean;
    cid integer := collection_id;
BEGIN
    key := format('e.embedding::%s(%s)', typ, m.dims);
    q := format('$1::%s(%s)', typ, m.dims);
    conds := format('e.model_id = %s', m.model_id);
    -- Collections (v5): the caller's row-level security, or a named collection.
    scoped := cid IS NOT NULL OR row_security_active(format('pgvision.%I', tbl)::regclass);
    IF scoped AND cid IS NULL THEN
        SELECT CASE WHEN count(*) = 1 THEN min(c.collection_id) END INTO cid FROM pgvision.collections c;
    END IF;
    IF cid IS NOT NULL THEN
        conds := conds || format(' AND e.collection_id = %s', cid);
    END IF;
    filtered := filtered OR scoped;
    -- The ORDER BY expression must be the model's index expression (indexes.index_ddl):
    --   none / halfvec: <key> <op> <query>, k rows;
    --   binary: Hamming distance of binary_quantize(...)::bit(D) (bit_hamming_ops), over
    --   max(ef_search, k) candidates, re-ranked by the full-precision distance (pgvector
    --   README, "Binary Quantization"); the candidate count is 10 x ef_search (iterative
    --   scan, at most 10,000), so the one knob that recall_target tunes widens both the
    --   graph walk and the re-ranking.
    IF deep THEN
        ord := format('@extschema:vector@.binary_quantize(%1$s)::bit(%2$s) OPERATOR(@extschema:vector@.<~>) '
                      '@extschema:vector@.binary_quantize(%3$s)::bit(%2$s)', key, m.dims, q);
        rows_wanted := least(10000, 10 * least(1000, greatest(coalesce(ef_search, m.ef_search), k)));
        lim := rows_wanted::text;
    ELSE
        ord := format('%s %s %s', key, op, q);
        lim := '$5';
        rows_wanted := k;
    END IF;

    -- Fast path, the common case: no filter, index scan. The query's rows go straight out
    -- (no arrays), and only the one setting the model's index reads is set (and restored).
    -- bench/profile_search.py measures each layer of this function.
    IF NOT filtered AND NOT exact AND m.index_method <> 'none' THEN
        IF m.index_method = 'hnsw' THEN
            old_ef := current_setting('hnsw.ef_search', true);
            want := least(1000, greatest(coalesce(ef_search, m.ef_search), k))::text;
            IF want IS DISTINCT FROM old_ef THEN
                PERFORM set_config('hnsw.ef_search', want, true);
            END IF;
        ELSE
            old_probes := current_setting('ivfflat.probes', true);
            want := coalesce(m.probes, 1)::text;
            IF want IS DISTINCT FROM old_probes THEN
                PERFORM set_config('ivfflat.probes', want, true);
            END IF;
        END IF;
        old_sort := current_setting('enable_sort');
        PERFORM set_config('enable_sort', 'off', true);
        IF deep THEN
            old_hnsw_iter := current_setting('hnsw.iterative_scan', true);
            old_ivf_iter := current_setting('ivfflat.iterative_scan', true);
            old_bound := current_setting('hnsw.max_scan_tuples', true);
            old_ivf_bound := current_setting('ivfflat.max_probes', true);
            PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
            PERFORM set_config('ivfflat.iterative_scan', 'relaxed_order', true);
            PERFORM set_config('hnsw.max_scan_tuples', greatest(20000, 5 * rows_wanted)::text, true);
            PERFORM set_config('ivfflat.max_probes', (10 * coalesce(m.probes, 1))::text, true);
        END IF;
        ann := format(
            'SELECT e.%1$I AS item_id, (%2$s %3$s %4$s)::float8 AS distance FROM pgvision.%5$I e WHERE %6$s ORDER BY %7$s LIMIT %8$s',
            item, key, op, q, tbl, conds, ord, lim);
        IF deep THEN
            ann := format('SELECT c.item_id, c.distance FROM (%s) c ORDER BY c.distance LIMIT $5', ann);
        END IF;
        RETURN QUERY EXECUTE ann USING query, label, filter, exclude_id, k;
        PERFORM set_config('enable_sort', old_sort, true);
        IF deep THEN
            PERFORM set_config('hnsw.iterative_scan', coalesce(old_hnsw_iter, 'off'), true);
            PERFORM set_config('ivfflat.iterative_scan', coalesce(old_ivf_iter, 'off'), true);
            PERFORM set_config('hnsw.max_scan_tuples', coalesce(old_bound, '20000'), true);
            PERFORM set_config('ivfflat.max_probes', coalesce(old_ivf_bound, '32768'), true);
        END IF;
        IF m.index_method = 'hnsw' AND want IS DISTINCT FROM old_ef THEN
            PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
        ELSIF m.index_method = 'ivfflat' AND want IS DISTINCT FROM old_probes THEN
            PERFORM set_config('ivfflat.probes', coalesce(old_probes, '1'), true);
        END IF;
        RETURN;
    END IF;
    old_ef := current_setting('hnsw.ef_search', true);
    old_hnsw_iter := current_setting('hnsw.iterative_scan', true);
    old_ivf_iter := current_setting('ivfflat.iterative_scan', true);
    old_probes := current_setting('ivfflat.probes', true);
    old_bound := current_setting('hnsw.max_scan_tuples', true);
    old_ivf_bound := current_setting('ivfflat.max_probes', true);
    IF m.kind = 'face' AND (enrolled_only OR label IS NOT NULL OR filter IS NOT NULL) THEN
        joins := ' JOIN pgvision.faces f ON f.face_id = e.face_id';
        IF enrolled_only THEN
            conds := conds || ' AND f.identity_id IS NOT NULL';
        END IF;
        IF label IS NOT NULL OR filter IS NOT NULL THEN
            joins := joins || ' JOIN pgvision.images i ON i.image_id = f.image_id';
        END IF;
    ELSIF m.kind = 'image' AND (label IS NOT NULL OR filter IS NOT NULL) THEN
        joins := ' JOIN pgvision.images i ON i.image_id = e.image_id';
    END IF;
    IF label IS NOT NULL THEN conds := conds || ' AND i.label = $2'; END IF;
    IF filter IS NOT NULL THEN conds := conds || ' AND i.metadata @> $3'; END IF;
    IF exclude_id IS NOT NULL THEN conds := conds || format(' AND e.%I <> $4', item); END IF;

    -- 1. A selective filter: exact scan of the few matching rows.
    IF NOT exact AND (label IS NOT NULL OR filter IS NOT NULL OR enrolled_only OR scoped) THEN
        EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM pgvision.%I e%s WHERE %s LIMIT %s) s',
                       tbl, joins, conds, c_exact_below + 1)
            INTO matching USING query, label, filter, exclude_id;
        exact := matching <= c_exact_below;
    END IF;

    IF NOT exact THEN
        -- scoped (v5): twice the model's ef_search unless the caller gave one (a collection's
        -- own, smaller graph needs it: docs/collections.md, the ef_search sweep)
        PERFORM set_config('hnsw.ef_search', least(1000, greatest(coalesce(ef_search,
            m.ef_search * CASE WHEN scoped THEN 2 ELSE 1 END), k))::text, true);
        PERFORM set_config('ivfflat.probes', coalesce(m.probes, 1)::text, true);
        PERFORM set_config('hnsw.iterative_scan', CASE WHEN filtered OR deep THEN 'relaxed_order' ELSE 'off' END, true);
        PERFORM set_config('ivfflat.iterative_scan', CASE WHEN filtered OR deep THEN 'relaxed_order' ELSE 'off' END, true);
        PERFORM set_config('hnsw.max_scan_tuples', greatest(20000, 5 * rows_wanted)::text, true);
        PERFORM set_config('ivfflat.max_probes', (10 * coalesce(m.probes, 1))::text, true);
        old_sort := current_setting('enable_sort');
        old_hash := current_setting('enable_hashjoin');
        old_merge := current_setting('enable_mergejoin');
        PERFORM set_config('enable_sort', 'off', true);
        PERFORM set_config('enable_hashjoin', 'off', true);
        PERFORM set_config('enable_mergejoin', 'off', true);
        -- 2. ANN scan; ORDER BY <key> <op> <query> LIMIT k is the form that uses the
        --    partial expression index of this model.
        ann := format(
            'SELECT e.%1$I AS item_id, (%2$s %3$s %4$s)::float8 AS distance'
            ' FROM pgvision.%5$I e%6$s WHERE %7$s ORDER BY %8$s LIMIT %9$s',
            item, key, op, q, tbl, joins, conds, ord, lim);
        IF deep THEN
            ann := format('SELECT c.item_id, c.distance FROM (%s) c ORDER BY c.distance LIMIT $5', ann);
        END IF;
        EXECUTE format('SELECT array_agg(item_id ORDER BY distance), array_agg(distance ORDER BY distance) FROM (%s) s', ann)
            INTO ids, dists USING query, label, filter, exclude_id, k;
        PERFORM set_config('enable_sort', old_sort, true);
        PERFORM set_config('enable_hashjoin', old_hash, true);
        PERFORM set_config('enable_mergejoin', old_merge, true);
        PERFORM set_config('hnsw.ef_search', coalesce(old_ef, '40'), true);
        PERFORM set_config('ivfflat.probes', coalesce(old_probes, '1'), true);
        PERFORM set_config('hnsw.iterative_scan', coalesce(old_hnsw_iter, 'off'), true);
        PERFORM set_config('ivfflat.iterative_scan', coalesce(old_ivf_iter, 'off'), true);
        PERFORM set_config('hnsw.max_scan_tuples', coalesce(old_bound, '20000'), true);
        PERFORM set_config('ivfflat.max_probes', coalesce(old_ivf_bound, '32768'), true);
        -- 3. Too few rows from a filtered ANN scan: answer exactly instead.
        exact := filtered AND coalesce(cardinality(ids), 0) < k;
    END IF;

    IF exact THEN
        -- The uncast column does not match the index expression: an exact scan.
        EXECUTE format(
            'SELECT array_agg(item_id ORDER BY distance), array_agg(distance ORDER BY distance) FROM ('
            ' SELECT e.%1$I AS item_id, (e.embedding %2$s $1::%6$s)::float8 AS distance'
            ' FROM pgvision.%3$I e%4$s WHERE %5$s ORDER BY 2 LIMIT $5) s',
            item, op, tbl, joins, conds, vec)
            INTO ids, dists USING query, label, filter, exclude_id, k;
    END IF;

    RETURN QUERY SELECT u.id, u.d FROM unnest(ids, dists) AS u(id, d);
END
$fn$;

COMMENT ON FUNCTION pgvision._nearest(pgvision.models, @extschema:vector@.vector, integer, text, jsonb, bigint, boolean, integer, boolean, integer) IS
'Internal: k nearest embeddings of a model (ANN index, bounded iterative scan for filters, collections and row-level security, and for binary models'' deeper re-ranking, exact fallback; plans independent of statistics). Use search_images / identify instead.';
