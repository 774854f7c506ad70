-- pgvision._cluster_assign(min_faces, reuse_old) -> TABLE (assigned bigint, created bigint)
--
-- Purpose: the clustering decision for one batch (incremental pass) or for every face (full
--   pass), on two temporary tables the caller fills:
--     pg_temp.pv_edges (a, b, d): directed neighbour edges a -> b, distance d <= max_distance
--       (pgvision._cluster_neighbours: top-k from the ANN index plus the distance cut);
--     pg_temp.pv_nodes (face_id, image_id, fixed, old, listed, decide, ...): the faces in
--       play. fixed = the person a face keeps (its identity, not decided here); decide = the
--       face may be assigned here; listed = its own neighbour list is in pv_edges; old = the
--       person a full pass found it in before (reused by overlap).
--   It writes pv_nodes.person (NULL = left unassigned) for the faces it decides.
-- The rule (a DBSCAN-style core-face rule as Immich's, with a stricter link):
--   1. neighbours of a face = the symmetric closure of the edges (a within max_distance of
--      b, found from either side); cnt = 1 + its neighbours.
--   2. core face: decide AND listed AND cnt >= min_faces (itself counted).
--   3. link: two core faces that are neighbours AND whose neighbour lists share at least
--      half of the shorter list (shared-nearest-neighbour linkage, as Jarvis and Patrick
--      1973, with a relative threshold). A lone close pair never joins two groups: a link
--      a-b needs a common neighbour w, close to both, so at least two close pairs (a-b and
--      a-w or w-b) cross between the groups; and two look-alike groups touching through
--      a few pairs are kept apart, because each face's list is mostly its own group
--      (LFW, dlib: Hans Blix and John Ashcroft have 18 photo pairs within 0.5 L2, and
--      stay two people; docs/people.md).
--   4. groups = connected components of the links (label propagation: each core face takes
--      the smallest face_id among its linked neighbours, with pointer jumping, until no
--      label changes). A non-core face joins the group of its nearest core neighbour (a
--      border face; it links nothing); any other listed face is a group of its own.
--   5. a group joins an existing person P (a fixed face's identity) when its faces have at
--      least least(2, size of P) close pairs with P's faces (size of P = its faces that
--      are not decided here): more than one close pair, or the only face of a
--      one-photo person. Several such P: the most pairs, then the closest pair, then the
--      smallest identity_id.
--   6. otherwise a group of >= min_faces faces is a person: with reuse_old (full pass),
--      the old person (pv_nodes.old: an automatic person the pass re-decides) it shares
--      the most faces with, largest overlaps first, each old person at most once and never
--      one holding hand-placed faces (this is how the ids of people survive a full pass;
--      named people keep theirs as fixed faces); else a new unnamed identity.
--      Smaller groups stay unassigned (retried in a later pass).
--   Faces of different collections (pv_nodes.coll, migration 0017) are never neighbours,
--   and a new person is created in its faces' collection.
--   7. one face per photo: of the faces of one photo given to one person, the one with the
--      most neighbours is kept (then the smallest face_id); a face whose person already
--      has another, undecided face in that photo is left unassigned.
-- Returns: faces given a person (decide, person not NULL) and identities created.
CREATE OR REPLACE FUNCTION pgvision._cluster_assign(min_faces integer, reuse_old boolean)
RETURNS TABLE (assigned bigint, created bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pgvision, pg_temp
AS $fn$
DECLARE
    changed bigint;
    r record;
    pid bigint;
    n_created bigint := 0;
    old_coll text;
BEGIN
    CREATE TEMPORARY TABLE IF NOT EXISTS pv_sym (a bigint NOT NULL, b bigint NOT NULL, d float8 NOT NULL) ON COMMIT DROP;
    CREATE TEMPORARY TABLE IF NOT EXISTS pv_links (a bigint NOT NULL, b bigint NOT NULL) ON COMMIT DROP;
    CREATE TEMPORARY TABLE IF NOT EXISTS pv_comp (comp bigint PRIMARY KEY, size bigint NOT NULL, person bigint, coll text) ON COMMIT DROP;
    TRUNCATE pg_temp.pv_sym, pg_temp.pv_links, pg_temp.pv_comp;
    INSERT INTO pg_temp.pv_sym (a, b, d)
    SELECT x.a, x.b, min(x.d) FROM (SELECT e.a, e.b, e.d FROM pg_temp.pv_edges e
                                    UNION ALL SELECT e.b, e.a, e.d FROM pg_temp.pv_edges e) x
    WHERE x.a <> x.b
    GROUP BY x.a, x.b;
    -- faces of two collections are never neighbours (pv_nodes.coll: NULL without collections)
    DELETE FROM pg_temp.pv_sym s USING pg_temp.pv_nodes na, pg_temp.pv_nodes nb
    WHERE na.face_id = s.a AND nb.face_id = s.b AND na.coll IS DISTINCT FROM nb.coll;
    CREATE INDEX IF NOT EXISTS pv_sym_ab ON pg_temp.pv_sym (a, b);
    CREATE INDEX IF NOT EXISTS pv_edges_ab ON pg_temp.pv_edges (a, b);
    ANALYZE pg_temp.pv_edges;
    ANALYZE pg_temp.pv_sym;
    ANALYZE pg_temp.pv_nodes;

    -- 1-2. neighbour counts and core faces
    UPDATE pg_temp.pv_nodes n SET cnt = 1 + c.c
    FROM (SELECT s.a, count(*) AS c FROM pg_temp.pv_sym s GROUP BY s.a) c WHERE c.a = n.face_id;
    UPDATE pg_temp.pv_nodes n SET core = n.decide AND n.listed AND coalesce(n.cnt, 1) >= min_faces,
                                  comp = NULL, person = NULL;
    ANALYZE pg_temp.pv_nodes;

    -- 3. links: core neighbours sharing at least half of the shorter neighbour list. Each
    --    face's neighbours as one array (a face is never its own neighbour, and b in N(a),
    --    a in N(b) cannot match each other: shared faces are third faces close to both).
    CREATE TEMPORARY TABLE IF NOT EXISTS pv_nbr (face_id bigint PRIMARY KEY, ids bigint[] NOT NULL) ON COMMIT DROP;
    TRUNCATE pg_temp.pv_nbr;
    INSERT INTO pg_temp.pv_nbr (face_id, ids)
    SELECT s.a, array_agg(s.b) FROM pg_temp.pv_sym s
    WHERE EXISTS (SELECT 1 FROM pg_temp.pv_nodes n WHERE n.face_id = s.a AND n.core)
    GROUP BY s.a;
    ANALYZE pg_temp.pv_nbr;
    INSERT INTO pg_temp.pv_links (a, b)
    SELECT s.a, s.b FROM pg_temp.pv_sym s
    JOIN pg_temp.pv_nbr xa ON xa.face_id = s.a
    JOIN pg_temp.pv_nbr xb ON xb.face_id = s.b
    WHERE xa.ids OPERATOR(pg_catalog.&&) xb.ids
      AND 2 * (SELECT count(*) FROM unnest(xa.ids) u WHERE u OPERATOR(pg_catalog.=) ANY (xb.ids))
          >= least(cardinality(xa.ids), cardinality(xb.ids));
    CREATE INDEX IF NOT EXISTS pv_links_a ON pg_temp.pv_links (a);
    ANALYZE pg_temp.pv_links;

    -- 4. components (label propagation with pointer jumping), border faces, singletons
    UPDATE pg_temp.pv_nodes n SET comp = n.face_id WHERE n.core;
    LOOP
        UPDATE pg_temp.pv_nodes n SET comp = m.c
        FROM (SELECT l.a, min(nb.comp) AS c FROM pg_temp.pv_links l
              JOIN pg_temp.pv_nodes nb ON nb.face_id = l.b GROUP BY l.a) m
        WHERE n.face_id = m.a AND m.c < n.comp;
        GET DIAGNOSTICS changed = ROW_COUNT;
        UPDATE pg_temp.pv_nodes n SET comp = root.comp FROM pg_temp.pv_nodes root
        WHERE root.face_id = n.comp AND root.comp < n.comp;
        EXIT WHEN changed = 0;
    END LOOP;
    ANALYZE pg_temp.pv_nodes;  -- core and comp are set now: the plans below depend on them
    UPDATE pg_temp.pv_nodes n SET comp = b.comp
    FROM (SELECT DISTINCT ON (s.a) s.a, c.comp
          FROM pg_temp.pv_sym s
          JOIN pg_temp.pv_nodes x ON x.face_id = s.a AND x.decide AND NOT x.core
          JOIN pg_temp.pv_nodes c ON c.face_id = s.b AND c.core
          ORDER BY s.a, s.d, s.b) b
    WHERE n.face_id = b.a;
    UPDATE pg_temp.pv_nodes n SET comp = n.face_id WHERE n.decide AND n.listed AND n.comp IS NULL;

    -- 5. groups joining an existing person
    INSERT INTO pg_temp.pv_comp (comp, size, coll)
    SELECT n.comp, count(*), min(n.coll) FROM pg_temp.pv_nodes n WHERE n.comp IS NOT NULL GROUP BY n.comp;
    UPDATE pg_temp.pv_comp c SET person = b.fixed
    FROM (SELECT DISTINCT ON (p.comp) p.comp, p.fixed
          FROM (SELECT n.comp, f.fixed, count(*) AS pairs, min(s.d) AS dmin
                FROM pg_temp.pv_nodes n
                JOIN pg_temp.pv_sym s ON s.a = n.face_id
                JOIN pg_temp.pv_nodes f ON f.face_id = s.b AND f.fixed IS NOT NULL
                WHERE n.comp IS NOT NULL
                GROUP BY n.comp, f.fixed) p
          WHERE p.pairs >= least(2, (SELECT count(*) FROM pgvision.faces g
                                     WHERE g.identity_id = p.fixed
                                       AND NOT coalesce((SELECT d.decide FROM pg_temp.pv_nodes d WHERE d.face_id = g.face_id), false)))
          ORDER BY p.comp, p.pairs DESC, p.dmin, p.fixed) b
    WHERE c.comp = b.comp;

    -- 6. new people: old ids by overlap (full pass), else new identities
    IF reuse_old THEN
        FOR r IN SELECT n.comp, n.old, count(*) AS overlap
                 FROM pg_temp.pv_nodes n JOIN pg_temp.pv_comp c ON c.comp = n.comp
                 WHERE c.person IS NULL AND c.size >= min_faces AND n.old IS NOT NULL
                 GROUP BY n.comp, n.old
                 ORDER BY overlap DESC, n.old, n.comp LOOP
            UPDATE pg_temp.pv_comp c SET person = r.old
            WHERE c.comp = r.comp AND c.person IS NULL
              AND NOT EXISTS (SELECT 1 FROM pg_temp.pv_comp u WHERE u.person = r.old)
              AND NOT EXISTS (SELECT 1 FROM pgvision.faces g WHERE g.identity_id = r.old AND g.assigned_by = 'hand');
        END LOOP;
    END IF;
    old_coll := current_setting('pgvision.collection_id', true);
    FOR r IN SELECT c.comp, c.coll FROM pg_temp.pv_comp c WHERE c.person IS NULL AND c.size >= min_faces ORDER BY c.comp LOOP
        IF r.coll IS NOT NULL THEN  -- the new person in its faces' collection (the column's default)
            PERFORM set_config('pgvision.collection_id', r.coll, true);
        END IF;
        INSERT INTO pgvision.identities (name) VALUES (NULL) RETURNING identity_id INTO pid;
        UPDATE pg_temp.pv_comp c SET person = pid WHERE c.comp = r.comp;
        n_created := n_created + 1;
    END LOOP;
    PERFORM set_config('pgvision.collection_id', coalesce(old_coll, ''), true);
    UPDATE pg_temp.pv_nodes n SET person = c.person FROM pg_temp.pv_comp c WHERE c.comp = n.comp AND n.decide;

    -- 7. one face per photo and person
    UPDATE pg_temp.pv_nodes n SET person = NULL
    FROM (SELECT x.face_id, row_number() OVER (PARTITION BY x.person, x.image_id
                                              ORDER BY x.cnt DESC NULLS LAST, x.face_id) AS rn
          FROM pg_temp.pv_nodes x WHERE x.person IS NOT NULL AND x.decide) k
    WHERE k.face_id = n.face_id AND k.rn > 1;
    UPDATE pg_temp.pv_nodes n SET person = NULL
    WHERE n.person IS NOT NULL AND n.decide
      AND EXISTS (SELECT 1 FROM pgvision.faces g
                  WHERE g.identity_id = n.person AND g.image_id = n.image_id AND g.face_id <> n.face_id
                    AND NOT coalesce((SELECT d.decide FROM pg_temp.pv_nodes d WHERE d.face_id = g.face_id), false));
    RETURN QUERY SELECT (SELECT count(*) FROM pg_temp.pv_nodes n WHERE n.decide AND n.person IS NOT NULL), n_created;
END
$fn$;

COMMENT ON FUNCTION pgvision._cluster_assign(integer, boolean) IS
'Internal: clustering decision on pg_temp.pv_nodes / pv_edges: core faces (>= min_faces within max_distance), shared-neighbour links, components, joining people by >= 2 close pairs, one face per photo.';
