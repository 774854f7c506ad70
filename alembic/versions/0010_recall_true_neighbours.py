"""recall_at_k counts the true top-k ids (and exact ties), as the recall ladder does.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

* ``recall_at_k.v3``: an ANN row is found when it is one of the exact top-k, or ties the
  k-th exact distance up to float rounding; v2's ann-benchmarks epsilon (k-th distance +
  1e-3) counted near misses as found where distances are concentrated (0.955 where the
  share of true ids was 0.89 at 1M x 512). Why: the file's header; the ladder's counting,
  ``pgvision.index.recall_target.hits``.

Downgrade re-applies v2.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "functions/recall_at_k.v3.sql")


def downgrade() -> None:
    apply_sql(op, "functions/recall_at_k.v2.sql")
