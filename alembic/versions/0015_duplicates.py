"""Duplicates: perceptual hashes of images, their index, and duplicate groups in SQL.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04

* ``images.phash bit(64)``: imagehash's pHash of the whole decoded image, and
  ``images.phash_crops bit(576)``: the pHashes of nine crops keeping 90 % of the width and
  height (offsets 0, 5, 10 % in x and y), so that a copy cropped by up to 10 % still
  matches (loader/pgvision/ingest/perceptual_hash.py). Both NULL or both set (CHECK).
  ``bit(64)`` rather than a model row of its own: a hash is one fixed-width value per image,
  compared by Hamming distance (pgvector's ``<~>`` on ``bit``), not an embedding; a column of
  ``images`` keeps it beside the sha256 it complements and out of every model's ANN index.
* ``images_phash``: B-tree index on ``(phash, image_id)`` for the images with an equal pHash (most
  re-encodings and resizes); near-but-unequal hashes (crops) come with the model's ANN
  candidates. Not an HNSW index ``(phash bit_hamming_ops)``: it made every inserted row a
  graph insert, 140-200 rows/s on this 2-core box against 40,000-48,000 with the B-tree
  (docs/duplicates.md). Built in the migration's transaction: the column is new and NULL
  everywhere, so the build reads the table once.
* ``pgvision_loader`` may ``UPDATE (phash, phash_crops)`` of images (``pgvision duplicates
  --fill-hashes`` fills them in for images loaded before).
* Type ``pgvision.duplicate_hit`` and functions ``_hash_distance``, ``_duplicate_limits``,
  ``_duplicate_pairs``, ``_duplicate_rows``, ``duplicate_groups`` and ``duplicates_of``
  (sql/functions/*.v1.sql), all SECURITY INVOKER (row-level security applies), EXECUTE
  granted to ``pgvision_reader`` and ``pgvision_loader`` (reading duplicates is a read).

Downgrade drops the functions, the type, the index and the two columns (with their grant).
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

FUNCTIONS = [
    "functions/_hash_distance.v1.sql",
    "functions/_duplicate_limits.v1.sql",
    "functions/_duplicate_pairs.v1.sql",
    "functions/_duplicate_rows.v1.sql",
    "functions/duplicate_groups.v1.sql",
    "functions/duplicates_of.v1.sql",
]

SIGNATURES = [
    "pgvision.duplicates_of(bigint, text, text, double precision, integer)",
    "pgvision.duplicate_groups(text, text, double precision, integer)",
    "pgvision._duplicate_rows(pgvision.models, bigint[], bigint[])",
    "pgvision._duplicate_pairs(pgvision.models, text, double precision, integer, integer, bigint)",
    "pgvision._duplicate_limits(pgvision.models, text, double precision, integer)",
    "pgvision._hash_distance(bit, bit, bit, bit)",
]


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgvision.images
            ADD COLUMN phash bit(64),
            ADD COLUMN phash_crops bit(576),
            ADD CONSTRAINT images_phash_with_crops CHECK ((phash IS NULL) = (phash_crops IS NULL))
        """
    )
    op.execute("CREATE INDEX images_phash ON pgvision.images (phash, image_id) WHERE phash IS NOT NULL")
    op.execute(
        "CREATE TYPE pgvision.duplicate_hit AS (group_id bigint, image_id bigint, uri text, label text, "
        "is_keeper boolean, distance double precision, hash_distance integer, width integer, height integer)"
    )
    for path in FUNCTIONS:
        apply_sql(op, path)
    for signature in SIGNATURES:
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO pgvision_reader, pgvision_loader")
    op.execute("GRANT UPDATE (phash, phash_crops) ON pgvision.images TO pgvision_loader")


def downgrade() -> None:
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION {signature}")
    op.execute("DROP TYPE pgvision.duplicate_hit")
    op.execute("REVOKE UPDATE (phash, phash_crops) ON pgvision.images FROM pgvision_loader")
    op.execute("DROP INDEX pgvision.images_phash")
    op.execute(
        "ALTER TABLE pgvision.images DROP CONSTRAINT images_phash_with_crops, "
        "DROP COLUMN phash_crops, DROP COLUMN phash"
    )
