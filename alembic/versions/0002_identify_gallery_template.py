"""identify v2: identity distance = min(nearest gallery face, mean of the gallery).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

The v1 rule scored an identity by its nearest gallery face only. v2 also scores it by the
mean of all its gallery embeddings and keeps the smaller distance (see
sql/functions/_identify.v2.sql and docs/faces.md for the rule and the LFW measurements).
The signature and result columns are unchanged, so callers need no change; thresholds
should be recalibrated (``pgvision calibrate``), since the distance is a different one.
Downgrade re-applies the v1 files.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

V2 = ["functions/_identify.v2.sql", "functions/identify.v2.sql", "functions/identify_face.v2.sql"]
V1 = ["functions/_identify.v1.sql", "functions/identify.v1.sql", "functions/identify_face.v1.sql"]


def upgrade() -> None:
    for path in V2:
        apply_sql(op, path)


def downgrade() -> None:
    for path in V1:
        apply_sql(op, path)
