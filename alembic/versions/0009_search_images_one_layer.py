"""search_images in one plpgsql layer: per-model branches written into it by the models trigger.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

* ``search_images.v4``: the model row by a cached statement, the argument checks inline,
  and each indexed image model's static ANN statement (joined to ``images``) in the
  function itself, under ``plan_cache_mode = force_generic_plan``; binary-quantized models
  and filtered searches keep v3's paths. Why and how much: the file's header,
  ``bench/search_designs.py``, docs/benchmarks.md ("search_images vs raw SQL").
* ``_model_ann.v2``: the models trigger also rewrites search_images' generated region.

The trigger is fired once (a statement trigger fires on an UPDATE of no row) to write the
branches of the models registered so far. Downgrade re-applies v3 and ``_model_ann.v1``.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql(op, "functions/search_images.v4.sql")
    apply_sql(op, "functions/_model_ann.v2.sql")
    op.execute("UPDATE pgvision.models SET kind = kind WHERE false")


def downgrade() -> None:
    apply_sql(op, "functions/search_images.v3.sql")
    apply_sql(op, "functions/_model_ann.v1.sql")
    op.execute("UPDATE pgvision.models SET kind = kind WHERE false")
