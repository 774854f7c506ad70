-- pgvision.labels: every image label with its number of images (NULL = unlabelled).
-- For BI tools: a filter list for search_images(label => ...).
CREATE OR REPLACE VIEW pgvision.labels AS
SELECT i.label, count(*) AS images
FROM pgvision.images i
GROUP BY i.label;

COMMENT ON VIEW pgvision.labels IS 'Image labels with their image counts (label NULL = unlabelled).';
