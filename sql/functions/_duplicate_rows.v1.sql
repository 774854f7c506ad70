-- pgvision._duplicate_rows(m, a_ids, b_ids) -> SETOF pgvision.duplicate_hit
--
-- Purpose: groups from duplicate pairs: the connected components of the graph whose edges
--   are the pairs (a_ids[i], b_ids[i]) (union-find with path halving, in memory: no
--   temporary table, so it runs on a hot standby), then per group its keeper and each
--   member's distances to the keeper.
-- Keeper: the member with the most pixels (width x height; unknown size counts as 0), then
--   the oldest (created_at), then the smallest image_id.
-- Arguments:
--   m       the image model (pgvision.models row) whose embeddings give the distances.
--   a_ids, b_ids  equal-length arrays of image_ids, one pair per index (NULL / empty: no rows).
-- Returns: one pgvision.duplicate_hit per member of a group of two or more: group_id (the
--   keeper's image_id), image_id, uri, label, is_keeper, distance (embedding distance to the
--   keeper in the model's metric, 0 for the keeper), hash_distance (pgvision._hash_distance
--   to the keeper, bits 0..64; NULL without hashes), width, height; ordered by group_id,
--   keeper first, then distance and image_id.
-- Rights: SECURITY INVOKER.
CREATE OR REPLACE FUNCTION pgvision._duplicate_rows(m pgvision.models, a_ids bigint[], b_ids bigint[])
RETURNS SETOF pgvision.duplicate_hit
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    op text := CASE m.metric WHEN 'cosine' THEN 'OPERATOR(@extschema:vector@.<=>)'
                             WHEN 'l2' THEN 'OPERATOR(@extschema:vector@.<->)'
                             ELSE 'OPERATOR(@extschema:vector@.<#>)' END;
    nodes bigint[];
    pa integer[];
    pb integer[];
    parent integer[];
    root integer[];
    n integer;
    i integer;
    x integer;
    y integer;
BEGIN
    IF coalesce(cardinality(a_ids), 0) = 0 THEN
        RETURN;
    END IF;
    -- Dense indexes 1..n for the image_ids met.
    SELECT array_agg(u.id ORDER BY u.id) INTO nodes
    FROM (SELECT DISTINCT v AS id FROM unnest(a_ids || b_ids) v) u;
    n := cardinality(nodes);
    SELECT array_agg(array_position_ab.ia ORDER BY array_position_ab.o),
           array_agg(array_position_ab.ib ORDER BY array_position_ab.o)
      INTO pa, pb
    FROM (SELECT p.o, na.ix AS ia, nb.ix AS ib
          FROM unnest(a_ids, b_ids) WITH ORDINALITY AS p(a, b, o)
          JOIN unnest(nodes) WITH ORDINALITY AS na(id, ix) ON na.id = p.a
          JOIN unnest(nodes) WITH ORDINALITY AS nb(id, ix) ON nb.id = p.b) array_position_ab;
    parent := array(SELECT g FROM generate_series(1, n) g);
    FOR i IN 1 .. cardinality(pa) LOOP
        x := pa[i];
        WHILE parent[x] <> x LOOP
            parent[x] := parent[parent[x]];
            x := parent[x];
        END LOOP;
        y := pb[i];
        WHILE parent[y] <> y LOOP
            parent[y] := parent[parent[y]];
            y := parent[y];
        END LOOP;
        IF x < y THEN
            parent[y] := x;
        ELSIF y < x THEN
            parent[x] := y;
        END IF;
    END LOOP;
    root := parent;
    FOR i IN 1 .. n LOOP
        x := i;
        WHILE root[x] <> x LOOP
            x := root[x];
        END LOOP;
        root[i] := x;
    END LOOP;
    RETURN QUERY EXECUTE format(
        'WITH g AS (SELECT u.id AS image_id, u.r AS grp FROM unnest($1::bigint[], $2::integer[]) AS u(id, r)),'
        ' k AS (SELECT g.image_id, g.grp, i.uri, i.label, i.width, i.height, i.phash, i.phash_crops,'
        '         first_value(g.image_id) OVER (PARTITION BY g.grp ORDER BY coalesce(i.width::bigint * i.height, 0) DESC,'
        '           i.created_at, g.image_id) AS keeper'
        '       FROM g JOIN pgvision.images i ON i.image_id = g.image_id)'
        ' SELECT k.keeper, k.image_id, k.uri, k.label, k.image_id = k.keeper,'
        '        CASE WHEN k.image_id = k.keeper THEN 0 ELSE (e.embedding %1$s ke.embedding)::float8 END,'
        '        pgvision._hash_distance(k.phash, k.phash_crops, kk.phash, kk.phash_crops), k.width, k.height'
        ' FROM k JOIN pgvision.images kk ON kk.image_id = k.keeper'
        ' JOIN pgvision.image_embeddings e ON e.model_id = %2$s AND e.image_id = k.image_id'
        ' JOIN pgvision.image_embeddings ke ON ke.model_id = %2$s AND ke.image_id = k.keeper'
        ' ORDER BY k.keeper, k.image_id <> k.keeper, 6, k.image_id',
        op, m.model_id)
    USING nodes, root;
END
$fn$;

COMMENT ON FUNCTION pgvision._duplicate_rows(pgvision.models, bigint[], bigint[]) IS
'Internal: duplicate groups (connected components) from pairs of image_ids, keeper = most pixels then oldest, distances to the keeper. Use duplicate_groups / duplicates_of instead.';
