-- pgvision.model_stats: every model with its stored embeddings, dims, metric, threshold and
-- ANN index (name, definition, size in bytes; NULL when not built yet).
-- v2 (issue 8): index_valid = pg_index.indisvalid of the model's index (false: a
--   CREATE INDEX CONCURRENTLY that failed left it behind; searches cannot use it; rebuild
--   it with pgvision db index). NULL when there is no index. A view is bound to the objects
--   it names when created, so no caller's search_path reaches it.
-- v3 (issue 13): the recall@10 the model's search setting was chosen for:
--   target_recall    recall@10 asked for (pgvision db index --target-recall; NULL = none);
--   measured_recall  recall@10 measured at the stored ef_search (HNSW) / probes (IVFFlat)
--                    when it was chosen (pgvision/recall_target.py);
--   recall_rows      embeddings stored at that measurement (measured again after a load
--                    once the model holds more than 1.5 times as many).
--   quantization     none, halfvec or binary (the index expression, see indexes.py).
CREATE OR REPLACE VIEW pgvision.model_stats AS
SELECT m.name AS model, m.kind, m.dims, m.metric, m.is_default,
       CASE m.kind
           WHEN 'image' THEN (SELECT count(*) FROM pgvision.image_embeddings e WHERE e.model_id = m.model_id)
           ELSE (SELECT count(*) FROM pgvision.face_embeddings e WHERE e.model_id = m.model_id)
       END AS embeddings,
       m.threshold, m.min_margin, m.index_method, m.ef_search, m.probes,
       ix.indexname AS index_name, ix.indexdef AS index_definition,
       CASE WHEN ix.indexname IS NOT NULL
            THEN pg_catalog.pg_relation_size(pg_catalog.to_regclass(pg_catalog.format('pgvision.%I', ix.indexname))) END AS index_bytes,
       CASE WHEN ix.indexname IS NOT NULL
            THEN (SELECT i.indisvalid FROM pg_catalog.pg_index i
                  WHERE i.indexrelid = pg_catalog.to_regclass(pg_catalog.format('pgvision.%I', ix.indexname))) END
           AS index_valid,
       m.target_recall, m.measured_recall, m.recall_rows, m.quantization
FROM pgvision.models m
LEFT JOIN pg_catalog.pg_indexes ix
       ON ix.schemaname = 'pgvision'
      AND ix.indexname = pg_catalog.format('%s_model_%s_%s',
                                CASE m.kind WHEN 'image' THEN 'image_embeddings' ELSE 'face_embeddings' END,
                                m.model_id, m.index_method);

COMMENT ON VIEW pgvision.model_stats IS
'Models with embedding counts, dims, metric, identity threshold, ANN index (name, definition, bytes, valid) and the recall@10 its ef_search / probes was chosen for (target_recall, measured_recall, recall_rows), and its quantization.';
