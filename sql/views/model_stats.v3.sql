-- pgvision.model_stats (v3): every model with its stored embeddings, dims, metric,
-- threshold and ANN index (name, definition, size in bytes, valid; NULL when not built
-- yet), and the recall its search setting was chosen for:
--   target_recall    recall@10 asked for (pgvision db index --target-recall; NULL = none);
--   measured_recall  recall@10 measured (pgvision.recall_at_k) at the stored ef_search
--                    (HNSW) or probes (IVFFlat) when that setting was chosen;
--   recall_rows      embeddings stored at that measurement (the loader measures again
--                    once the model has grown by half since; see recall_target.py).
-- index_valid (pg_index.indisvalid) is false while CREATE INDEX CONCURRENTLY runs or
-- after it failed (v2 of the "sec" branch adds the same column).
CREATE OR REPLACE VIEW pgvision.model_stats AS
SELECT m.name AS model, m.kind, m.dims, m.metric, m.is_default,
       CASE m.kind
           WHEN 'image' THEN (SELECT count(*) FROM pgvision.image_embeddings e WHERE e.model_id = m.model_id)
           ELSE (SELECT count(*) FROM pgvision.face_embeddings e WHERE e.model_id = m.model_id)
       END AS embeddings,
       m.threshold, m.min_margin, m.index_method, m.ef_search, m.probes,
       ix.indexname AS index_name, ix.indexdef AS index_definition,
       CASE WHEN ix.indexname IS NOT NULL
            THEN pg_relation_size(to_regclass(format('pgvision.%I', ix.indexname))) END AS index_bytes,
       (SELECT i.indisvalid FROM pg_index i
        WHERE i.indexrelid = to_regclass(format('pgvision.%I', ix.indexname))) AS index_valid,
       m.target_recall, m.measured_recall, m.recall_rows
FROM pgvision.models m
LEFT JOIN pg_indexes ix
       ON ix.schemaname = 'pgvision'
      AND ix.indexname = format('%s_model_%s_%s',
                                CASE m.kind WHEN 'image' THEN 'image_embeddings' ELSE 'face_embeddings' END,
                                m.model_id, m.index_method);

COMMENT ON VIEW pgvision.model_stats IS
'Models with embedding counts, dims, metric, identity threshold, ANN index (name, definition, bytes, valid) and the recall@10 its ef_search / probes was chosen for (target_recall, measured_recall, recall_rows).';
