"""hardening: per-model view names never collide; recall_at_k's timings rounded.

``_model_view.v4``: models whose names differ only by case or punctuation (``coll``,
``COLL``) share a base view name, and v3's fallback ``vectors_<name>_<model_id>`` could be
taken by another model's view (a model named ``coll_9``): registering the second model then
failed. v4 takes the first free ``..._<model_id>_<n>``. Existing views keep their names.

``recall_at_k.v6``: ``ann_ms`` and ``exact_ms`` rounded to 3 decimals (same signature).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "functions/_model_view.v4.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
    apply_sql(op, "functions/recall_at_k.v6.sql")


def downgrade() -> None:
    apply_sql(op, "functions/recall_at_k.v5.sql")
    apply_sql(op, "functions/_model_view.v3.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
