-- pgvision._collection_id(collection text) -> integer
--
-- Purpose: the collection_id of a collection the caller may see, for the read functions'
--   `collection` argument. Reads pgvision.collections with the caller's rights, so row-level
--   security shows only the collections granted to the caller (the schema owner sees all).
-- Arguments:
--   collection  a collection's name (pgvision.collections.name); NULL = NULL (no restriction).
-- Returns: its collection_id, or NULL for a NULL name.
-- Fails: 42704 no such collection, or not granted to the caller: one message for both, so a
--   role learns nothing of collections it may not see.
CREATE OR REPLACE FUNCTION pgvision._collection_id(collection text)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    cid integer;
BEGIN
    IF collection IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.collection_id INTO cid FROM pgvision.collections c WHERE c.name = collection;
    IF cid IS NULL THEN
        RAISE EXCEPTION 'collection % does not exist or is not granted to role %', quote_literal(collection), current_user
            USING ERRCODE = 'undefined_object',
                  HINT = 'pass a name from pgvision.collections (the collections you may see), or NULL for all of them';
    END IF;
    RETURN cid;
END
$fn$;

COMMENT ON FUNCTION pgvision._collection_id(text) IS
'Internal: collection_id of a collection the caller may see (row-level security); 42704 when it does not exist or is not granted.';
