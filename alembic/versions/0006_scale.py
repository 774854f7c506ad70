"""Scale: identify's plan independent of statistics; search settings chosen by recall.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22

* ``_identify.v4``: the same decision rule as v2, evaluated over deeper candidates
  (the owners of the 200+ nearest gallery faces) by primary-key lookups, so that the plan
  does not fall off a cliff before ANALYZE (129 ms instead of 5 ms at 30k faces with v2,
  see the file's header and docs/benchmarks.md).
* ``_nearest.v3``: its ANN statements run with ``enable_sort`` / ``enable_hashjoin`` /
  ``enable_mergejoin`` off, so that before ANALYZE the planner cannot trade the index
  walk for an exact sort of the whole model (46 ms instead of 5 ms at 30k faces).
* ``models.target_recall``, ``measured_recall``, ``recall_rows``: the recall@10 a model's
  ``ef_search`` / ``probes`` was chosen for, what was measured, and at how many rows
  (``pgvision db index --target-recall``, pgvision/recall_target.py).
* ``models.quantization``: ``none`` (full-precision index), ``halfvec`` (index of
  ``embedding::halfvec(D)``) or ``binary`` (``binary_quantize(...)::bit(D)`` with
  ``bit_hamming_ops``, re-ranked by the full-precision distance); ``_nearest.v3`` orders
  by the matching expression.
* ``model_stats.v3`` shows them.

Downgrade drops the columns and re-applies 0003's ``_identify.v3``, ``_nearest.v2``
and ``model_stats.v2``.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE pgvision.models
            ADD COLUMN target_recall real CHECK (target_recall > 0 AND target_recall <= 1),
            ADD COLUMN measured_recall real CHECK (measured_recall >= 0 AND measured_recall <= 1),
            ADD COLUMN recall_rows bigint CHECK (recall_rows >= 0),
            ADD COLUMN quantization text NOT NULL DEFAULT 'none' CHECK (quantization IN ('none', 'halfvec', 'binary'))
        """
    )
    apply_sql(op, "functions/_nearest.v3.sql")
    apply_sql(op, "functions/_identify.v4.sql")
    apply_sql(op, "views/model_stats.v3.sql")


def downgrade() -> None:
    # The view reads the columns: it goes back first.
    op.execute("DROP VIEW pgvision.model_stats")
    apply_sql(op, "views/model_stats.v2.sql")
    op.execute("GRANT SELECT ON pgvision.model_stats TO pgvision_reader, pgvision_loader")
    apply_sql(op, "functions/_identify.v3.sql")
    apply_sql(op, "functions/_nearest.v2.sql")
    op.execute(
        "ALTER TABLE pgvision.models DROP COLUMN target_recall, DROP COLUMN measured_recall, "
        "DROP COLUMN recall_rows, DROP COLUMN quantization"
    )
