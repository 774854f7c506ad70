"""Collections (tenants) on one server, kept apart by PostgreSQL row-level security.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04

Data model (docs/collections.md has the whole tenancy model):

* ``pgvision.collections (collection_id, name)``: a tenant's pool of images and people.
  Collection 1, ``default``, holds every row that existed before this revision and every
  row written without a collection.
* ``pgvision.collection_grants (role regrole, collection_id)``: which roles may see (and,
  with the loader's privileges, write) which collections. A role sees the collections granted
  to it or to a role whose privileges it has (``pg_has_role(current_user, role, 'USAGE')``).
  ``regrole`` keeps the role's OID (a renamed role keeps its grants; a dropped role's rows
  match nobody) and reads and prints as the role's name.
* ``collection_id`` on images, identities, faces, face_scans, image_embeddings,
  face_embeddings, identity_templates and calibrations. Child rows are tied to their parent's
  collection by composite foreign keys (``(image_id, collection_id)`` -> images, ``(face_id,
  collection_id)`` -> faces, ``(identity_id, collection_id)`` -> identities), so a face can
  only be enrolled as an identity of its own collection and an embedding only belongs to an
  image of its own collection. The columns' default is the session's
  ``pgvision.collection_id`` setting (the loader sets it for ``--collection``), else 1.
* Uniqueness moves inside a collection: an image is unique by ``(collection_id, sha256)``
  and a name by ``(collection_id, name)``: two tenants may hold the same photo or a person of
  the same name, and a load into one never collides with (or learns of) another's rows.

Row-level security: one policy per table (``collection_member``, FOR ALL), ``collection_id =
ANY (ARRAY(SELECT collection_id FROM pgvision.collection_grants))``, evaluated once per
statement (an InitPlan); collection_grants' own policy shows a role only its own grants and
collections' only the granted names. The privileges (pgvision_reader: SELECT; pgvision_loader:
INSERT / UPDATE of some columns) still decide *what* a role may do; the grants decide *on which
rows*. The table owner (who runs migrations and ``pgvision db index``) and superusers are not
subject to the policies (no FORCE ROW LEVEL SECURITY: the owner's SECURITY DEFINER triggers,
_sync_templates, _model_ann and _model_view, must see every row). pgvision_reader and
pgvision_loader themselves are granted nothing: a login made a member of them by hand sees
no row until a collection is granted to it (fail closed). This revision grants ``default`` to
every role that was already a member of either, so existing logins keep seeing what they saw.
Every view of schema pgvision becomes ``security_invoker`` (PostgreSQL 15+), and
``_model_view.v3`` creates the per-model views so: a view otherwise runs with its owner's
rights and would bypass the policies.

``_sync_templates.v3`` writes a template's collection_id (its identity's).

The people tables: a cluster_edges / cluster_deferred row is visible when its faces are (the
policy reads faces under the caller's own policies); cluster_passes and people_audit get a
collection_id (the session's, as every other table) and the collection policy.

Read functions (new versions; each takes ``collection text DEFAULT NULL``, NULL = every
collection the caller may see): search_images.v6, similar_images.v3, identify.v4,
identify_face.v4, recall_at_k.v5, over _nearest.v5 and _identify.v6 (a caller under
row-level security, or a named collection, takes the filtered path: bounded iterative scan,
exact scan of a small collection, a collection's own partial index when it has one) and
_collection_id.v1 (a name to an id, 42704 when not visible). ``(collection_id, model_id)``
indexes on both embeddings tables make a collection's rows cheap to count and to scan
exactly. Downgrade re-applies the previous versions (and the SQLSTATE lists revision 0013
gave their comments).

Downgrade removes the policies, columns and tables and restores the global uniqueness of
sha256 and names; it refuses, saying which, when two collections hold the same image or the
same name (merge or delete one first).
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

#: The column default: the session's pgvision.collection_id setting, else the default collection.
SESSION_COLLECTION = "(coalesce(nullif(current_setting('pgvision.collection_id', true), ''), '1'))::integer"
#: The policy's test: a collection granted to a role whose privileges the current user has.
VISIBLE = "collection_id = ANY (ARRAY(SELECT g.collection_id FROM pgvision.collection_grants g))"

#: Tables that get collection_id, and their tie to the parent's collection:
#: (table, [(old fk name, columns, parent, parent columns, actions)]).
CHILDREN = [
    ("faces", [
        ("faces_image_id_fkey", "image_id, collection_id", "images", "image_id, collection_id",
         "ON DELETE CASCADE ON UPDATE CASCADE"),
        ("faces_identity_id_fkey", "identity_id, collection_id", "identities", "identity_id, collection_id",
         "ON DELETE SET NULL (identity_id)"),
    ]),
    ("face_scans", [
        ("face_scans_image_id_fkey", "image_id, collection_id", "images", "image_id, collection_id",
         "ON DELETE CASCADE ON UPDATE CASCADE"),
    ]),
    ("image_embeddings", [
        ("image_embeddings_image_id_fkey", "image_id, collection_id", "images", "image_id, collection_id",
         "ON DELETE CASCADE ON UPDATE CASCADE"),
    ]),
    ("face_embeddings", [
        ("face_embeddings_face_id_fkey", "face_id, collection_id", "faces", "face_id, collection_id",
         "ON DELETE CASCADE ON UPDATE CASCADE"),
    ]),
    ("identity_templates", [
        ("identity_templates_identity_id_fkey", "identity_id, collection_id", "identities",
         "identity_id, collection_id", "ON DELETE CASCADE ON UPDATE CASCADE"),
    ]),
]
#: Every table whose rows belong to a collection (row-level security on each).
TENANT_TABLES = ["images", "identities", *(t for t, _ in CHILDREN), "calibrations"]
#: The old single-column foreign keys, to restore on downgrade.
OLD_FKS = {
    "faces_image_id_fkey": ("faces", "image_id", "images", "ON DELETE CASCADE"),
    "faces_identity_id_fkey": ("faces", "identity_id", "identities", "ON DELETE SET NULL"),
    "face_scans_image_id_fkey": ("face_scans", "image_id", "images", "ON DELETE CASCADE"),
    "image_embeddings_image_id_fkey": ("image_embeddings", "image_id", "images", "ON DELETE CASCADE"),
    "face_embeddings_face_id_fkey": ("face_embeddings", "face_id", "faces", "ON DELETE CASCADE"),
    "identity_templates_identity_id_fkey": ("identity_templates", "identity_id", "identities", "ON DELETE CASCADE"),
}

#: New read functions: (file, previous file or None).
FUNCTIONS = [
    ("functions/_collection_id.v1.sql", None),
    ("functions/_nearest.v5.sql", "functions/_nearest.v4.sql"),
    ("functions/_identify.v6.sql", "functions/_identify.v5.sql"),
    ("functions/search_images.v6.sql", "functions/search_images.v5.sql"),
    ("functions/similar_images.v3.sql", "functions/similar_images.v2.sql"),
    ("functions/identify.v4.sql", "functions/identify.v3.sql"),
    ("functions/identify_face.v4.sql", "functions/identify_face.v3.sql"),
    ("functions/recall_at_k.v5.sql", "functions/recall_at_k.v4.sql"),
]
#: The SQLSTATE lists revision 0013 appended to the comments of files that had none; given
#: back on downgrade (the same text as 0013's).
FAILS_0013 = {
    "similar_images": "22004 NULL image_id or k; 22023 k or ef_search outside 1..1000, a face model named, or "
                      "several image models and none the default; P0002 no such image, or no embedding of that "
                      "model for it; 42704 unknown model; 55000 no image model loaded yet.",
    "identify": "22004 NULL query or candidates; 22023 candidates or ef_search outside 1..1000, query of another "
                "dimension than the model's, zero (cosine) or overflowing query, threshold or min_margin not a "
                "finite number >= 0, an image model named, or several face models and none the default; "
                "42704 unknown model; 55000 no face model loaded yet, or the model has no threshold "
                "(pass threshold => or run pgvision calibrate).",
    "identify_face": "22004 NULL face_id or candidates; 22023 candidates or ef_search outside 1..1000, threshold "
                     "or min_margin not a finite number >= 0, an image model named, or several face models and "
                     "none the default; P0002 no such face, or no embedding of that model for it; 42704 unknown "
                     "model; 55000 no face model loaded yet, or the model has no threshold.",
}
#: People tables (revision 0014) keyed by faces: (table, policy condition).
FACE_VISIBLE = "EXISTS (SELECT 1 FROM pgvision.faces f WHERE f.face_id = {col})"
PEOPLE_POLICIES = [
    ("cluster_deferred", FACE_VISIBLE.format(col="cluster_deferred.face_id")),
    ("cluster_edges", FACE_VISIBLE.format(col="cluster_edges.a") + " AND " + FACE_VISIBLE.format(col="cluster_edges.b")),
]
#: People tables that get a collection_id of their own.
PEOPLE_COLLECTION_TABLES = ["cluster_passes", "people_audit"]

_DROP_FUNCTION = """
DO $drop$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid FROM pg_catalog.pg_proc p
             WHERE p.pronamespace = 'pgvision'::regnamespace AND p.proname = {name} LOOP
        EXECUTE format('DROP FUNCTION %s', f);
    END LOOP;
END
$drop$
"""


def _replace_function(path: str) -> None:
    """Apply a function file in place of every installed version (its arguments may differ)."""
    name = path.split("/")[-1].split(".")[0]
    op.execute(_DROP_FUNCTION.format(name="'" + name + "'"))
    apply_sql(op, path)
    op.execute(f"GRANT EXECUTE ON FUNCTION pgvision.{name} TO pgvision_reader, pgvision_loader")


def _comment_sql(name: str) -> str:
    """A DO block appending 0013's SQLSTATE list to the comment of the one function ``name``."""
    fails = "'" + (" Fails (SQLSTATE): " + FAILS_0013[name]).replace("'", "''") + "'"
    return f"""
        DO $comment$
        DECLARE fn oid;
        BEGIN
            SELECT p.oid INTO STRICT fn FROM pg_catalog.pg_proc p
            WHERE p.pronamespace = 'pgvision'::regnamespace AND p.proname = '{name}';
            EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn::regprocedure,
                           coalesce(pg_catalog.obj_description(fn, 'pg_proc'), '') || {fails});
        END
        $comment$
        """


_VIEWS_SECURITY = """
DO $views$
DECLARE v text;
BEGIN
    FOR v IN SELECT c.relname FROM pg_catalog.pg_class c
             WHERE c.relnamespace = 'pgvision'::regnamespace AND c.relkind = 'v' ORDER BY 1 LOOP
        EXECUTE format('ALTER VIEW pgvision.%I {action}', v);
    END LOOP;
END
$views$
"""


def upgrade() -> None:
    op.execute(
        """
        DO $version$
        BEGIN
            IF current_setting('server_version_num')::integer < 150000 THEN
                RAISE EXCEPTION 'pgvision collections need PostgreSQL 15 or newer (security_invoker views, ON DELETE SET NULL (column)); this server is %',
                    current_setting('server_version') USING ERRCODE = 'feature_not_supported';
            END IF;
        END
        $version$
        """
    )
    op.execute(
        """
        CREATE TABLE pgvision.collections (
            collection_id integer GENERATED BY DEFAULT AS IDENTITY (START WITH 2) PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("INSERT INTO pgvision.collections (collection_id, name) VALUES (1, 'default')")
    op.execute("COMMENT ON TABLE pgvision.collections IS "
               "'Collections (tenants): each image, face and identity belongs to one; row-level security shows a role "
               "only the collections granted to it (pgvision.collection_grants)'")
    op.execute(
        """
        CREATE TABLE pgvision.collection_grants (
            role regrole NOT NULL,
            collection_id integer NOT NULL REFERENCES pgvision.collections ON DELETE CASCADE,
            PRIMARY KEY (role, collection_id)
        )
        """
    )
    op.execute("CREATE INDEX collection_grants_collection ON pgvision.collection_grants (collection_id)")
    op.execute("COMMENT ON TABLE pgvision.collection_grants IS "
               "'Which roles see which collections: a role sees the collections granted to it or to a role whose "
               "privileges it has (pg_has_role USAGE); pgvision db user create --collection writes it'")
    for table, key in (("images", "image_id"), ("identities", "identity_id")):
        op.execute(f"ALTER TABLE pgvision.{table} ADD COLUMN collection_id integer NOT NULL DEFAULT 1 "
                   "REFERENCES pgvision.collections")
        op.execute(f"ALTER TABLE pgvision.{table} ALTER COLUMN collection_id SET DEFAULT {SESSION_COLLECTION}")
        op.execute(f"ALTER TABLE pgvision.{table} ADD CONSTRAINT {table}_id_collection "
                   f"UNIQUE ({key}, collection_id)")
    op.execute("ALTER TABLE pgvision.images DROP CONSTRAINT images_sha256_key, "
               "ADD CONSTRAINT images_collection_sha256 UNIQUE (collection_id, sha256)")
    op.execute("ALTER TABLE pgvision.identities DROP CONSTRAINT identities_name_key, "
               "ADD CONSTRAINT identities_collection_name UNIQUE (collection_id, name)")
    for table, fks in CHILDREN:
        op.execute(f"ALTER TABLE pgvision.{table} ADD COLUMN collection_id integer NOT NULL DEFAULT 1")
        op.execute(f"ALTER TABLE pgvision.{table} ALTER COLUMN collection_id SET DEFAULT {SESSION_COLLECTION}")
        for old, cols, parent, parent_cols, actions in fks:
            op.execute(f"ALTER TABLE pgvision.{table} DROP CONSTRAINT {old}, "
                       f"ADD CONSTRAINT {old.removesuffix('_fkey')}_collection_fkey FOREIGN KEY ({cols}) "
                       f"REFERENCES pgvision.{parent} ({parent_cols}) {actions}")
        if table == "faces":
            op.execute("ALTER TABLE pgvision.faces ADD CONSTRAINT faces_id_collection UNIQUE (face_id, collection_id)")
    op.execute("ALTER TABLE pgvision.calibrations ADD COLUMN collection_id integer NOT NULL DEFAULT 1 "
               "REFERENCES pgvision.collections")
    op.execute(f"ALTER TABLE pgvision.calibrations ALTER COLUMN collection_id SET DEFAULT {SESSION_COLLECTION}")
    for table in TENANT_TABLES:
        op.execute(
            f"COMMENT ON COLUMN pgvision.{table}.collection_id IS "
            "'Collection (tenant) of the row; default: the session''s pgvision.collection_id setting, else 1 (default)'"
        )
        op.execute(f"ALTER TABLE pgvision.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY collection_member ON pgvision.{table} USING ({VISIBLE}) WITH CHECK ({VISIBLE})")
    op.execute("ALTER TABLE pgvision.collections ENABLE ROW LEVEL SECURITY")
    op.execute(f"CREATE POLICY collection_member ON pgvision.collections FOR SELECT USING ({VISIBLE})")
    op.execute("ALTER TABLE pgvision.collection_grants ENABLE ROW LEVEL SECURITY")
    op.execute("CREATE POLICY own_grants ON pgvision.collection_grants FOR SELECT "
               "USING (pg_catalog.pg_has_role(current_user, role::oid, 'USAGE'))")
    op.execute("GRANT SELECT ON pgvision.collections, pgvision.collection_grants TO pgvision_reader, pgvision_loader")
    # Logins (and group roles) already in pgvision_reader / pgvision_loader keep seeing the
    # rows they saw: all of them are in `default`.
    op.execute(
        """
        INSERT INTO pgvision.collection_grants (role, collection_id)
        SELECT r.oid::regrole, 1 FROM pg_catalog.pg_roles r
        WHERE r.rolname NOT IN ('pgvision_reader', 'pgvision_loader') AND NOT r.rolsuper
          AND r.rolname !~ '^pg_'
          AND (pg_catalog.pg_has_role(r.oid, 'pgvision_reader', 'MEMBER')
               OR pg_catalog.pg_has_role(r.oid, 'pgvision_loader', 'MEMBER'))
        """
    )
    op.execute(_VIEWS_SECURITY.format(action="SET (security_invoker = true)"))
    apply_sql(op, "functions/_model_view.v3.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
    apply_sql(op, "functions/_sync_templates.v3.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._sync_templates() FROM PUBLIC")
    for table, condition in PEOPLE_POLICIES:
        op.execute(f"ALTER TABLE pgvision.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY collection_member ON pgvision.{table} USING ({condition}) WITH CHECK ({condition})")
    for table in PEOPLE_COLLECTION_TABLES:
        op.execute(f"ALTER TABLE pgvision.{table} ADD COLUMN collection_id integer NOT NULL DEFAULT 1 "
                   "REFERENCES pgvision.collections")
        op.execute(f"ALTER TABLE pgvision.{table} ALTER COLUMN collection_id SET DEFAULT {SESSION_COLLECTION}")
        op.execute(f"ALTER TABLE pgvision.{table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY collection_member ON pgvision.{table} USING ({VISIBLE}) WITH CHECK ({VISIBLE})")
    for table in ("image_embeddings", "face_embeddings"):
        op.execute(f"CREATE INDEX {table}_collection ON pgvision.{table} (collection_id, model_id)")
    for path, _ in FUNCTIONS:
        _replace_function(path)
    op.execute("UPDATE pgvision.models SET kind = kind WHERE false")  # search_images' generated branches


def downgrade() -> None:
    op.execute(
        """
        DO $clash$
        DECLARE what text;
        BEGIN
            SELECT format('image sha256 %s', encode(sha256, 'hex')) INTO what FROM pgvision.images
                GROUP BY sha256 HAVING count(*) > 1 LIMIT 1;
            IF what IS NULL THEN
                SELECT format('identity name %s', quote_literal(name)) INTO what FROM pgvision.identities
                    WHERE name IS NOT NULL GROUP BY name HAVING count(*) > 1 LIMIT 1;
            END IF;
            IF what IS NOT NULL THEN
                RAISE EXCEPTION 'cannot remove collections: % is in more than one collection, and without collections it must be unique',
                    what USING ERRCODE = 'unique_violation',
                    HINT = 'delete or rename the copies in all but one collection, then downgrade again';
            END IF;
        END
        $clash$
        """
    )
    for path, old in reversed(FUNCTIONS):
        name = path.split("/")[-1].split(".")[0]
        if old is None:
            op.execute(_DROP_FUNCTION.format(name="'" + name + "'"))
            continue
        _replace_function(old)
        if name in FAILS_0013:
            op.execute(_comment_sql(name))
    op.execute("UPDATE pgvision.models SET kind = kind WHERE false")
    for table in ("image_embeddings", "face_embeddings"):
        op.execute(f"DROP INDEX pgvision.{table}_collection")
    for table in [t for t, _ in PEOPLE_POLICIES] + PEOPLE_COLLECTION_TABLES:
        op.execute(f"DROP POLICY collection_member ON pgvision.{table}")
        op.execute(f"ALTER TABLE pgvision.{table} DISABLE ROW LEVEL SECURITY")
    for table in PEOPLE_COLLECTION_TABLES:
        op.execute(f"ALTER TABLE pgvision.{table} DROP COLUMN collection_id")
    apply_sql(op, "functions/_sync_templates.v2.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._sync_templates() FROM PUBLIC")
    apply_sql(op, "functions/_model_view.v2.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
    op.execute(_VIEWS_SECURITY.format(action="RESET (security_invoker)"))
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY collection_member ON pgvision.{table}")
        op.execute(f"ALTER TABLE pgvision.{table} DISABLE ROW LEVEL SECURITY")
    for table, fks in reversed(CHILDREN):
        for old, *_ in fks:
            op.execute(f"ALTER TABLE pgvision.{table} DROP CONSTRAINT {old.removesuffix('_fkey')}_collection_fkey")
    op.execute("ALTER TABLE pgvision.faces DROP CONSTRAINT faces_id_collection")
    op.execute("ALTER TABLE pgvision.identities DROP CONSTRAINT identities_collection_name, "
               "DROP CONSTRAINT identities_id_collection, ADD CONSTRAINT identities_name_key UNIQUE (name)")
    op.execute("ALTER TABLE pgvision.images DROP CONSTRAINT images_collection_sha256, "
               "DROP CONSTRAINT images_id_collection, ADD CONSTRAINT images_sha256_key UNIQUE (sha256)")
    for name, (table, col, parent, actions) in OLD_FKS.items():
        op.execute(f"ALTER TABLE pgvision.{table} ADD CONSTRAINT {name} FOREIGN KEY ({col}) "
                   f"REFERENCES pgvision.{parent} {actions}")
    for table in TENANT_TABLES:
        op.execute(f"ALTER TABLE pgvision.{table} DROP COLUMN collection_id")
    # One statement: the policy on collections reads collection_grants.
    op.execute("DROP TABLE pgvision.collection_grants, pgvision.collections")
