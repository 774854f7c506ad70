"""fast defaults at scale: index shape by size, range search, deeper re-rank (reserved: no schema change yet).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
