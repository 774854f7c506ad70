"""pgvision schema: models, images, identities, faces, embeddings, the SQL API and roles.

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Design choices (measured or cited):

* One embeddings table per kind of object (``image_embeddings``, ``face_embeddings``) with an
  untyped ``vector`` column and one *partial expression index* per model, e.g.
  ``USING hnsw ((embedding::vector(1280)) vector_cosine_ops) WHERE model_id = 3``
  (pgvector README, "Can I store vectors with different dimensions in the same column?").
  Several models live side by side, one COPY path serves them all, and a new model needs
  an index, not a table. Models over 2,000 dims are indexed through ``halfvec`` (HNSW and
  IVFFlat index at most 2,000 ``vector`` dims, 4,000 ``halfvec`` dims).
* Column storage ``EXTERNAL`` plus ``toast_tuple_target = 8160``: a row is never compressed
  (float vectors do not compress) and stays inline while it fits a page, which is what
  ``STORAGE PLAIN`` gives (1.5x faster COPY, 4.7x faster exact scans at 512-d, see
  ../shared/ENVIRONMENT.md), yet a 2,048-d float32 vector (8 KB, more than a page) still
  loads: it moves out of line instead of failing as it would under PLAIN.
  bench/bench_storage.py measures the three choices side by side.
* Roles: ``pgvision_reader`` (search functions and views, no writes) and ``pgvision_loader``
  (may load). Roles are cluster-wide: created if absent, dropped on downgrade only when no
  other database still grants them anything.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0001"
down_revision = None
branch_labels = ("pgvision",)
depends_on = None

FUNCTIONS_V1 = [
    "functions/_resolve_model.v1.sql",
    "functions/_check_query.v1.sql",
    "functions/_similarity.v1.sql",
    "functions/_nearest.v1.sql",
    "functions/_identify.v1.sql",
    "functions/search_images.v1.sql",
    "functions/similar_images.v1.sql",
    "functions/identify.v1.sql",
    "functions/identify_face.v1.sql",
    "functions/recall_at_k.v1.sql",
]
VIEWS_V1 = [
    "views/labels.v1.sql",
    "views/gallery.v1.sql",
    "views/model_stats.v1.sql",
]


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    op.execute("CREATE SCHEMA pgvision")
    op.execute(
        """
        CREATE TABLE pgvision.models (
            model_id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
            kind text NOT NULL CHECK (kind IN ('image', 'face')),
            dims integer NOT NULL CHECK (dims BETWEEN 1 AND 16000),
            metric text NOT NULL CHECK (metric IN ('cosine', 'l2', 'inner_product')),
            normalized boolean NOT NULL DEFAULT false,
            preprocessing jsonb NOT NULL DEFAULT '{}',
            weights_sha256 text CHECK (weights_sha256 ~ '^[0-9a-f]{64}$'),
            index_method text NOT NULL DEFAULT 'hnsw' CHECK (index_method IN ('hnsw', 'ivfflat', 'none')),
            hnsw_m integer NOT NULL DEFAULT 16 CHECK (hnsw_m BETWEEN 2 AND 100),
            hnsw_ef_construction integer NOT NULL DEFAULT 64 CHECK (hnsw_ef_construction BETWEEN 4 AND 1000),
            ivfflat_lists integer CHECK (ivfflat_lists BETWEEN 1 AND 32768),
            ef_search integer NOT NULL DEFAULT 40 CHECK (ef_search BETWEEN 1 AND 1000),
            probes integer CHECK (probes BETWEEN 1 AND 32768),
            threshold real,
            min_margin real NOT NULL DEFAULT 0 CHECK (min_margin >= 0),
            is_default boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            CHECK (hnsw_ef_construction >= 2 * hnsw_m)
        )
        """
    )
    op.execute("CREATE UNIQUE INDEX models_one_default_per_kind ON pgvision.models (kind) WHERE is_default")
    op.execute(
        """
        CREATE TABLE pgvision.images (
            image_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            sha256 bytea NOT NULL UNIQUE CHECK (length(sha256) = 32),
            uri text NOT NULL,
            label text,
            width integer CHECK (width > 0),
            height integer CHECK (height > 0),
            metadata jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX images_label ON pgvision.images (label)")
    op.execute("CREATE INDEX images_metadata ON pgvision.images USING gin (metadata jsonb_path_ops)")
    op.execute(
        """
        CREATE TABLE pgvision.identities (
            identity_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
            metadata jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE pgvision.faces (
            face_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            image_id bigint NOT NULL REFERENCES pgvision.images ON DELETE CASCADE,
            detector text NOT NULL,
            box_left integer NOT NULL,
            box_top integer NOT NULL,
            box_right integer NOT NULL,
            box_bottom integer NOT NULL,
            landmarks real[],
            detector_score real,
            identity_id bigint REFERENCES pgvision.identities ON DELETE SET NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (image_id, detector, box_left, box_top, box_right, box_bottom),
            CHECK (box_right > box_left AND box_bottom > box_top)
        )
        """
    )
    op.execute("CREATE INDEX faces_identity ON pgvision.faces (identity_id) WHERE identity_id IS NOT NULL")
    op.execute(
        """
        CREATE TABLE pgvision.face_scans (
            image_id bigint NOT NULL REFERENCES pgvision.images ON DELETE CASCADE,
            detector text NOT NULL,
            faces integer NOT NULL CHECK (faces >= 0),
            scanned_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (image_id, detector)
        )
        """
    )
    for table, item, parent in (
        ("image_embeddings", "image_id", "images"),
        ("face_embeddings", "face_id", "faces"),
    ):
        op.execute(
            f"""
            CREATE TABLE pgvision.{table} (
                model_id integer NOT NULL REFERENCES pgvision.models ON DELETE CASCADE,
                {item} bigint NOT NULL REFERENCES pgvision.{parent} ON DELETE CASCADE,
                embedding vector NOT NULL,
                PRIMARY KEY (model_id, {item})
            ) WITH (toast_tuple_target = 8160)
            """
        )
        op.execute(f"ALTER TABLE pgvision.{table} ALTER COLUMN embedding SET STORAGE EXTERNAL")
    op.execute(
        """
        CREATE TABLE pgvision.calibrations (
            calibration_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            model_id integer NOT NULL REFERENCES pgvision.models ON DELETE CASCADE,
            threshold real NOT NULL,
            min_margin real NOT NULL DEFAULT 0,
            target_far double precision,
            far double precision,
            frr double precision,
            tar double precision,
            genuine_pairs bigint NOT NULL,
            impostor_pairs bigint NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # The row type of search_images / similar_images (a RETURNS TABLE column may not share
    # a name with an argument, and both take `label`, similar_images `image_id`).
    op.execute(
        "CREATE TYPE pgvision.image_hit AS "
        "(image_id bigint, uri text, label text, distance double precision, similarity double precision)"
    )
    for path in FUNCTIONS_V1 + VIEWS_V1:
        apply_sql(op, path)
    apply_sql(op, "roles.v1.sql")


def downgrade() -> None:
    op.execute("DROP SCHEMA pgvision CASCADE")
    apply_sql(op, "roles_drop.v2.sql")  # issue 8: keeps a role that still has members
    # The vector extension stays: other schemas of the database may use pgvector, and
    # dropping it would take their columns with it.
