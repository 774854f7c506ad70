-- pgvision.recall_at_k(model, k, sample, ef_search, collection)
--   -> TABLE (index_method text, neighbours integer, queries integer, recall double precision,
--             ef_search_used integer, probes_used integer, ann_ms double precision, exact_ms double precision)
-- v6: ann_ms and exact_ms are rounded to 3 decimals (microseconds): a mean of a few timed
--   queries is not known to 15 digits, and BI tools printed them all.
-- v5: collections. `collection` measures the searches of one collection (its vectors are the
--   queries and the ground truth; NULL = every vector the caller may see). Runs with the
--   caller's rights: under row-level security a reader measures what its own searches get
--   (the scoped path of _nearest.v5), over its own collections' vectors only.
--
-- Purpose: recall of the model's ANN index against an exact scan, measured in SQL (as
-- VectorChord's vchordrq_evaluate_query_recall does) on a sample of the stored vectors.
-- Method: the `sample` stored embeddings with the smallest md5 of their id (the same sample
-- on every call, so settings compare fairly) are the queries. For each, the ANN and the
-- exact top-k (the query itself left out of both). An ANN row counts as found when it is
-- one of the exact top-k ids, or when its full-precision distance ties the k-th exact
-- distance (relative 1e-9: float rounding, not nearness). Both sides of the tie are
-- full-precision distances: a halfvec index's distances are rounded (about 1e-3 relative),
-- so comparing them with the exact scan's would count rows that are farther than the k-th
-- as ties. The same counting as the recall ladder (loader/pgvision/index/recall_target.py).
-- Arguments:
--   model      model name (image or face model), required.
--   k          neighbours per query, 1..1000 (default 10).
--   sample     number of queries, 1..10000 (default 100).
--   ef_search  HNSW candidate list to measure, 1..1000; NULL = the model's.
--   collection only vectors of this collection (pgvision.collections.name); NULL = every
--              vector the caller may see.
-- Returns: one row: index_method; neighbours = k (less when the model has <= k vectors);
--   queries = sample (less when fewer vectors); recall in 0..1; ef_search_used (HNSW) or
--   probes_used (IVFFlat); ann_ms / exact_ms = mean milliseconds per query, rounded to
--   3 decimals.
-- Fails: 22004 model is NULL; 42704 unknown model; 22023 k (NULL included), sample (NULL
--   included) or ef_search out of range; 55000 fewer than 2 vectors; 42704 also for a
--   collection that does not exist or is not granted to the caller.
CREATE OR REPLACE FUNCTION pgvision.recall_at_k(
    model text,
    k integer DEFAULT 10,
    sample integer DEFAULT 100,
    ef_search integer DEFAULT NULL,
    collection text DEFAULT NULL)
RETURNS TABLE (index_method text, neighbours integer, queries integer, recall double precision,
               ef_search_used integer, probes_used integer, ann_ms double precision, exact_ms double precision)
LANGUAGE plpgsql VOLATILE
SET search_path FROM CURRENT
AS $fn$
#variable_conflict use_variable
DECLARE
    m pgvision.models;
    tbl text;
    item text;
    op text;
    probe_id bigint;
    probe @extschema:vector@.vector;
    ann bigint[];
    ann_d double precision[];
    truth_ids bigint[];
    truth_d double precision[];
    hits bigint := 0;
    asked bigint := 0;
    n integer := 0;
    kk integer;
    t0 timestamptz;
    ann_total double precision := 0;
    exact_total double precision := 0;
    cid integer := pgvision._collection_id(collection);
BEGIN
    IF recall_at_k.model IS NULL THEN
        RAISE EXCEPTION 'model must not be NULL: pass a name from pgvision.models'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO m FROM pgvision.models x WHERE x.name = recall_at_k.model;
    IF NOT FOUND THEN
        m := pgvision._resolve_model(recall_at_k.model, 'image');  -- raises the 42704 message
    END IF;
    IF k IS NULL OR k < 1 OR k > 1000 THEN
        RAISE EXCEPTION 'k must be between 1 and 1000, got %', coalesce(k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF recall_at_k.ef_search IS NOT NULL AND (recall_at_k.ef_search < 1 OR recall_at_k.ef_search > 1000) THEN
        RAISE EXCEPTION 'ef_search must be between 1 and 1000, got %', recall_at_k.ef_search
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF sample IS NULL OR sample < 1 OR sample > 10000 THEN
        RAISE EXCEPTION 'sample must be between 1 and 10000, got %', coalesce(sample::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    tbl := CASE m.kind WHEN 'image' THEN 'image_embeddings' ELSE 'face_embeddings' END;
    item := CASE m.kind WHEN 'image' THEN 'image_id' ELSE 'face_id' END;
    op := CASE m.metric WHEN 'cosine' THEN 'OPERATOR(@extschema:vector@.<=>)' WHEN 'l2' THEN 'OPERATOR(@extschema:vector@.<->)'
                        ELSE 'OPERATOR(@extschema:vector@.<#>)' END;
    EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM pgvision.%I e WHERE e.model_id = $1 '
                   'AND ($3::integer IS NULL OR e.collection_id = $3) LIMIT $2) s', tbl)
        INTO kk USING m.model_id, k + 1, cid;
    IF kk < 2 THEN
        RAISE EXCEPTION 'model % has % stored vectors; recall needs at least 2', quote_literal(m.name), kk
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    kk := least(k, kk - 1);
    FOR probe_id, probe IN EXECUTE format(
        'SELECT e.%1$I, e.embedding FROM pgvision.%2$I e WHERE e.model_id = $1 '
        'AND ($3::integer IS NULL OR e.collection_id = $3) ORDER BY md5(e.%1$I::text) LIMIT $2',
        item, tbl) USING m.model_id, sample, cid
    LOOP
        t0 := clock_timestamp();
        SELECT array_agg(x.item_id ORDER BY x.distance), array_agg(x.distance ORDER BY x.distance)
            INTO ann, ann_d
            FROM pgvision._nearest(m, probe, kk + 1, ef_search => recall_at_k.ef_search, collection_id => cid) x;
        ann_total := ann_total + extract(epoch FROM clock_timestamp() - t0) * 1000;
        t0 := clock_timestamp();
        SELECT array_agg(x.item_id ORDER BY x.distance), array_agg(x.distance ORDER BY x.distance)
            INTO truth_ids, truth_d
            FROM pgvision._nearest(m, probe, kk + 1, exclude_id => probe_id, exact => true, collection_id => cid) x;
        exact_total := exact_total + extract(epoch FROM clock_timestamp() - t0) * 1000;
        -- the ANN list without the probe itself, first kk rows: true neighbours, and ties by
        -- the full-precision distance (the exact scan's), not the index's (halfvec: rounded)
        EXECUTE format(
            'SELECT count(*) FROM (SELECT a.id FROM unnest($1, $2) AS a(id, d) WHERE a.id <> $3 ORDER BY a.d LIMIT $4) a '
            'JOIN pgvision.%1$I e ON e.%2$I = a.id AND e.model_id = $5 '
            'WHERE a.id = ANY ($6) OR (e.embedding %3$s $7)::float8 <= $8 + 1e-9 * abs($8)', tbl, item, op)
            INTO n USING ann, ann_d, probe_id, kk, m.model_id, truth_ids[1:kk], probe, truth_d[kk];
        hits := hits + n;
        asked := asked + kk;
    END LOOP;
    n := asked / kk;
    RETURN QUERY SELECT m.index_method, kk, n, hits::float8 / asked,
        CASE WHEN m.index_method = 'hnsw' THEN least(1000, greatest(coalesce(recall_at_k.ef_search, m.ef_search), kk + 1)) END,
        CASE WHEN m.index_method = 'ivfflat' THEN coalesce(m.probes, 1) END,
        round((ann_total / n)::numeric, 3)::float8, round((exact_total / n)::numeric, 3)::float8;
END
$fn$;

COMMENT ON FUNCTION pgvision.recall_at_k(text, integer, integer, integer, text) IS
'Recall@k of the model''s ANN index against an exact scan on a fixed sample of stored vectors (the share of the true top-k returned; ties at full precision count), '
'with ef_search / probes used and mean ms per query (3 decimals); collection: that collection''s vectors only (NULL = every vector you may see). '
'Fails: 22004 NULL model; 42704 unknown model, or a collection that does not exist or is not granted to you; 22023 k, sample or ef_search out of range; '
'55000 fewer than 2 vectors.';
