"""Per-model views for hand-written SQL and BI tools: pgvision.vectors_<model>.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22

Each model gets a view with its rows and ``embedding`` typed as the model's ``vector(D)``
(``halfvec(D)`` above 2,000 dims), the expression of the model's partial ANN index, so that
``SELECT image_id, label FROM pgvision.vectors_efficientnet_lite0 ORDER BY embedding <=> $1
LIMIT 20`` uses the index; the raw ``image_embeddings`` table does not (its ``embedding`` is
untyped ``vector``). A trigger on ``pgvision.models`` creates the view with the model and
drops it with the model (sql/functions/_model_view.v1.sql); ``models.view_name`` names it.
This migration adds both and creates the views of models already registered; downgrade
drops them.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE pgvision.models ADD COLUMN view_name text UNIQUE")
    op.execute("COMMENT ON COLUMN pgvision.models.view_name IS "
               "'The model''s view in schema pgvision (vectors_<name>), for hand-written SQL'")
    apply_sql(op, "functions/_model_view.v1.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER models_view AFTER INSERT OR DELETE ON pgvision.models "
        "FOR EACH ROW EXECUTE FUNCTION pgvision._model_view()"
    )
    # Models registered before this revision: replay the trigger's INSERT branch for each
    # row through a temporary copy of the table (its UPDATE of view_name hits the real row).
    op.execute(
        """
        DO $backfill$
        BEGIN
            CREATE TEMPORARY TABLE pgvision_models_backfill (LIKE pgvision.models) ON COMMIT DROP;
            CREATE TRIGGER backfill AFTER INSERT ON pgvision_models_backfill
                FOR EACH ROW EXECUTE FUNCTION pgvision._model_view();
            INSERT INTO pgvision_models_backfill SELECT * FROM pgvision.models ORDER BY model_id;
            DROP TABLE pgvision_models_backfill;
        END
        $backfill$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DO $drop$
        DECLARE v text;
        BEGIN
            FOR v IN SELECT view_name FROM pgvision.models WHERE view_name IS NOT NULL LOOP
                EXECUTE format('DROP VIEW IF EXISTS pgvision.%I', v);
            END LOOP;
        END
        $drop$
        """
    )
    op.execute("DROP TRIGGER models_view ON pgvision.models")
    op.execute("DROP FUNCTION pgvision._model_view()")
    op.execute("ALTER TABLE pgvision.models DROP COLUMN view_name")
