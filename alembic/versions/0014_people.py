"""people: unnamed people, hand-placed faces, clustering on the ANN index, people verbs and their audit.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

A person is an identity whose name may be NULL: enrolled identities are named people,
clustering and hand splits make unnamed ones. identify / identify_face keep their contract
and may now return a row whose ``name`` is NULL (an unnamed person). What changes:

* ``identities.name`` becomes nullable (still unique when set, 1..200 characters).
* ``faces.assigned_by`` ('hand' | 'cluster' | NULL) and ``faces.ignored`` (not a face: never
  clustered). A BEFORE trigger (``_faces_assigned_by.v1``) marks every face given an
  identity outside a clustering pass 'hand' (enroll, faces load --identity-from, the
  people verbs); no clustering pass ever moves a 'hand' face. Faces enrolled before this
  revision are marked 'hand'.
* A person has at most one face per photo: ``faces_one_face_per_photo``, an exclusion
  constraint on (identity_id, image_id) where identity_id is set, DEFERRABLE INITIALLY
  IMMEDIATE (checked at the end of each statement, so one UPDATE may swap two faces).
  Upgrade refuses, saying which faces, when stored data breaks it.
* ``faces_unassigned``: partial index of faces without a person (the incremental pass's
  queue).
* Clustering state: ``cluster_passes`` (one open pass per model: its mode, settings,
  cursor and counts), ``cluster_edges`` (a full pass's stored neighbourhoods),
  ``cluster_deferred`` (faces tried and left unassigned). Each batch commits with the
  pass's cursor, so a kill at any point leaves whole batches and a rerun goes on.
* ``people_audit``: one row per people verb and per finished pass (when, current_user,
  action, identity ids, face ids, detail).
* Functions: cluster_start / cluster_step / cluster_faces and their internals
  (_cluster_distance, _cluster_neighbours, _cluster_assign), people_name, people_merge,
  people_move, people_split, people_ignore (_people_move). All SECURITY INVOKER (the
  caller's grants and row-level security apply); EXECUTE is revoked from PUBLIC and granted
  to pgvision_loader (the owner keeps it): the reader role cannot call them.
* Views ``people`` and ``unassigned_faces`` (security_invoker), readable by both roles.
* Grants to pgvision_loader for what the verbs write: UPDATE faces(identity_id,
  assigned_by, ignored), UPDATE identities(name), DELETE identities (an emptied unnamed
  person is removed), INSERT people_audit, INSERT / UPDATE cluster_passes, INSERT / DELETE
  cluster_edges and cluster_deferred.

Downgrade drops all of it. Unnamed people cannot exist before this revision: they are
removed (their faces keep no identity; a NOTICE says how many), named people and every
face stay.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

FUNCTIONS = [
    "functions/_faces_assigned_by.v1.sql",
    "functions/_cluster_distance.v1.sql",
    "functions/_cluster_neighbours.v1.sql",
    "functions/_cluster_assign.v1.sql",
    "functions/cluster_start.v1.sql",
    "functions/cluster_step.v1.sql",
    "functions/cluster_faces.v1.sql",
    "functions/_people_move.v1.sql",
    "functions/people_move.v1.sql",
    "functions/people_split.v1.sql",
    "functions/people_name.v1.sql",
    "functions/people_merge.v1.sql",
    "functions/people_ignore.v1.sql",
]
VIEWS = ["views/people.v1.sql", "views/unassigned_faces.v1.sql"]

#: Signatures, for grants and drops (order: dependants first).
SIGNATURES = [
    "cluster_faces(text, text, real, integer, integer, integer)",
    "cluster_step(bigint, integer)",
    "cluster_start(text, text, real, integer, integer)",
    "_cluster_assign(integer, boolean)",
    "_cluster_neighbours(pgvision.models, bigint[], integer, real, integer)",
    "_cluster_distance(pgvision.models)",
    "people_move(bigint[], bigint)",
    "people_split(bigint, bigint[])",
    "_people_move(bigint[], bigint, text)",
    "people_name(bigint, text)",
    "people_merge(bigint, bigint)",
    "people_ignore(bigint[], boolean)",
]
TABLES = ["people_audit", "cluster_deferred", "cluster_edges", "cluster_passes"]


def upgrade() -> None:
    op.execute("ALTER TABLE pgvision.identities ALTER COLUMN name DROP NOT NULL")
    op.execute("COMMENT ON COLUMN pgvision.identities.name IS "
               "'The person''s name; NULL = an unnamed person (found by clustering, or split off by hand)'")
    op.execute(
        """
        ALTER TABLE pgvision.faces
            ADD COLUMN assigned_by text CHECK (assigned_by IN ('hand', 'cluster')),
            ADD COLUMN ignored boolean NOT NULL DEFAULT false,
            ADD CONSTRAINT faces_assigned_by_needs_identity CHECK (assigned_by IS NULL OR identity_id IS NOT NULL),
            ADD CONSTRAINT faces_ignored_has_no_identity CHECK (NOT ignored OR identity_id IS NULL)
        """
    )
    op.execute(
        "COMMENT ON COLUMN pgvision.faces.assigned_by IS "
        "'Who placed the face in its person: hand (enroll, people verbs; never moved by clustering), cluster, or NULL'"
    )
    op.execute("COMMENT ON COLUMN pgvision.faces.ignored IS "
               "'Not a face / ignore: in no person, never clustered (pgvision.people_ignore)'")
    op.execute("UPDATE pgvision.faces SET assigned_by = 'hand' WHERE identity_id IS NOT NULL")
    op.execute(
        """
        DO $check$
        DECLARE r record;
        BEGIN
            SELECT f.identity_id, f.image_id, array_agg(f.face_id ORDER BY f.face_id) AS ids, count(*) OVER () AS n INTO r
            FROM pgvision.faces f WHERE f.identity_id IS NOT NULL
            GROUP BY f.identity_id, f.image_id HAVING count(*) > 1
            ORDER BY f.identity_id, f.image_id LIMIT 1;
            IF FOUND THEN
                RAISE EXCEPTION 'pgvision 0014: a person may have at most one face per photo, but % photo(s) break it, e.g. identity % has faces % in image %: un-enroll all but one of each (UPDATE pgvision.faces SET identity_id = NULL WHERE face_id = ...) and rerun pgvision db upgrade',
                    r.n, r.identity_id, r.ids, r.image_id
                    USING ERRCODE = 'unique_violation';
            END IF;
        END
        $check$
        """
    )
    op.execute(
        "ALTER TABLE pgvision.faces ADD CONSTRAINT faces_one_face_per_photo "
        "EXCLUDE USING btree (identity_id WITH =, image_id WITH =) WHERE (identity_id IS NOT NULL) "
        "DEFERRABLE INITIALLY IMMEDIATE"
    )
    op.execute("CREATE INDEX faces_unassigned ON pgvision.faces (face_id) WHERE identity_id IS NULL AND NOT ignored")
    op.execute(
        """
        CREATE TABLE pgvision.cluster_passes (
            pass_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            model_id integer NOT NULL REFERENCES pgvision.models ON DELETE CASCADE,
            mode text NOT NULL CHECK (mode IN ('incremental', 'full')),
            max_distance real NOT NULL CHECK (max_distance > 0 AND max_distance < 'Infinity'::real),
            min_faces integer NOT NULL CHECK (min_faces BETWEEN 1 AND 1000),
            neighbours integer NOT NULL CHECK (neighbours BETWEEN 1 AND 1000),
            phase text NOT NULL CHECK (phase IN ('incremental', 'neighbours', 'assign', 'done', 'abandoned')),
            cursor bigint NOT NULL DEFAULT 0,
            total bigint NOT NULL DEFAULT 0,
            processed bigint NOT NULL DEFAULT 0,
            assigned bigint NOT NULL DEFAULT 0,
            created bigint NOT NULL DEFAULT 0,
            unassigned bigint,
            started_by text NOT NULL DEFAULT current_user,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX cluster_passes_one_open ON pgvision.cluster_passes (model_id) WHERE finished_at IS NULL"
    )
    op.execute(
        "COMMENT ON TABLE pgvision.cluster_passes IS "
        "'Clustering passes (pgvision.cluster_start / cluster_step): settings, cursor and counts; one open pass per model'"
    )
    op.execute(
        """
        CREATE TABLE pgvision.cluster_edges (
            pass_id bigint NOT NULL REFERENCES pgvision.cluster_passes ON DELETE CASCADE,
            a bigint NOT NULL,
            b bigint NOT NULL,
            d double precision NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX cluster_edges_pass ON pgvision.cluster_edges (pass_id)")
    op.execute(
        "COMMENT ON TABLE pgvision.cluster_edges IS "
        "'Neighbourhoods a full clustering pass found so far (face a -> face b at distance d); emptied when it ends'"
    )
    op.execute(
        """
        CREATE TABLE pgvision.cluster_deferred (
            model_id integer NOT NULL REFERENCES pgvision.models ON DELETE CASCADE,
            face_id bigint NOT NULL REFERENCES pgvision.faces ON DELETE CASCADE,
            pass_id bigint,
            PRIMARY KEY (model_id, face_id)
        )
        """
    )
    op.execute("CREATE INDEX cluster_deferred_face ON pgvision.cluster_deferred (face_id)")
    op.execute("COMMENT ON TABLE pgvision.cluster_deferred IS "
               "'Faces a clustering pass tried and left without a person; retried when a new face lands near them'")
    op.execute(
        """
        CREATE TABLE pgvision.people_audit (
            audit_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT now(),
            by_user text NOT NULL DEFAULT current_user,
            action text NOT NULL CHECK (action IN ('name', 'merge', 'move', 'split', 'ignore', 'unignore', 'cluster')),
            identity_ids bigint[] NOT NULL DEFAULT '{}',
            face_ids bigint[] NOT NULL DEFAULT '{}',
            detail jsonb NOT NULL DEFAULT '{}'
        )
        """
    )
    op.execute(
        "COMMENT ON TABLE pgvision.people_audit IS "
        "'One row per people verb (name, merge, move, split, ignore, unignore) and per finished clustering pass'"
    )
    for path in FUNCTIONS + VIEWS:
        apply_sql(op, path)
    op.execute("REVOKE ALL ON FUNCTION pgvision._faces_assigned_by() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER faces_assigned_by BEFORE INSERT OR UPDATE OF identity_id ON pgvision.faces "
        "FOR EACH ROW EXECUTE FUNCTION pgvision._faces_assigned_by()"
    )
    for sig in SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION pgvision.{sig} FROM PUBLIC, pgvision_reader")
        op.execute(f"GRANT EXECUTE ON FUNCTION pgvision.{sig} TO pgvision_loader")
    op.execute("GRANT SELECT ON pgvision.people, pgvision.unassigned_faces TO pgvision_reader, pgvision_loader")
    op.execute("GRANT SELECT ON " + ", ".join(f"pgvision.{t}" for t in TABLES) + " TO pgvision_reader, pgvision_loader")
    op.execute("GRANT INSERT ON pgvision.people_audit, pgvision.cluster_passes, pgvision.cluster_edges, "
               "pgvision.cluster_deferred TO pgvision_loader")
    op.execute("GRANT UPDATE ON pgvision.cluster_passes TO pgvision_loader")
    op.execute(
        "GRANT DELETE ON pgvision.cluster_edges, pgvision.cluster_deferred, pgvision.identities TO pgvision_loader"
    )
    op.execute("GRANT UPDATE (identity_id, assigned_by, ignored) ON pgvision.faces TO pgvision_loader")
    op.execute("GRANT UPDATE (name) ON pgvision.identities TO pgvision_loader")


def downgrade() -> None:
    op.execute("REVOKE DELETE ON pgvision.identities FROM pgvision_loader")
    op.execute("REVOKE UPDATE (name) ON pgvision.identities FROM pgvision_loader")
    op.execute("DROP VIEW pgvision.unassigned_faces")
    op.execute("DROP VIEW pgvision.people")
    for sig in SIGNATURES:
        op.execute(f"DROP FUNCTION pgvision.{sig}")
    op.execute("DROP TRIGGER faces_assigned_by ON pgvision.faces")
    op.execute("DROP FUNCTION pgvision._faces_assigned_by()")
    for table in TABLES:
        op.execute(f"DROP TABLE pgvision.{table}")
    op.execute("DROP INDEX pgvision.faces_unassigned")
    op.execute("ALTER TABLE pgvision.faces DROP CONSTRAINT faces_one_face_per_photo, "
               "DROP CONSTRAINT faces_ignored_has_no_identity, DROP CONSTRAINT faces_assigned_by_needs_identity, "
               "DROP COLUMN ignored, DROP COLUMN assigned_by")
    op.execute(
        """
        DO $unnamed$
        DECLARE n bigint;
        BEGIN
            DELETE FROM pgvision.identities WHERE name IS NULL;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n > 0 THEN
                RAISE NOTICE 'pgvision 0014 downgrade: % unnamed people removed (their faces keep no identity); named people and every face stay', n;
            END IF;
        END
        $unnamed$
        """
    )
    op.execute("ALTER TABLE pgvision.identities ALTER COLUMN name SET NOT NULL")
    op.execute("COMMENT ON COLUMN pgvision.identities.name IS NULL")
