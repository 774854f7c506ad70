"""Templates: a bounded number of locks per transaction, whatever it changes.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22

* ``_sync_templates.v2``: identities are serialised through 1,024 lock buckets under an
  intention lock instead of one advisory lock per identity. v1 ran the server out of
  shared lock memory ("out of shared memory ... max_locks_per_transaction") on any
  statement touching ~10,000 identities: deleting a face model with 100,000 enrolled
  people (found by ``bench/bench_scale.py --faces 1000000``), or one bulk enrolment.
  See the file's header.

Downgrade re-applies 0007's ``_sync_templates.v1``.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "functions/_sync_templates.v2.sql")


def downgrade() -> None:
    apply_sql(op, "functions/_sync_templates.v1.sql")
