"""Per-model views follow the model's index: rebuilt when its quantization or method changes.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03

``pgvision.vectors_<model>`` typed ``embedding`` once, at registration (``vector(D)``, or
``halfvec(D)`` above 2,000 dims); after ``pgvision db index --quantization halfvec`` the
model's index is on ``embedding::halfvec(D)`` and the view's ``ORDER BY embedding <=> $1``
could no longer use it. ``_model_view.v2``: the trigger also fires on ``UPDATE OF kind, dims,
metric, index_method, quantization`` and rebuilds the view (same name, same grants) typed as
the index: ``halfvec(D)`` for halfvec models, and an extra ``embedding_binary bit(D)`` column
for binary models (their Hamming index). Upgrade rebuilds the views of the registered
models; downgrade re-applies v1, restores the INSERT/DELETE trigger and rebuilds the views
as v1 made them.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_DROP_VIEWS = """
DO $drop$
DECLARE v text;
BEGIN
    FOR v IN SELECT view_name FROM pgvision.models WHERE view_name IS NOT NULL LOOP
        EXECUTE format('DROP VIEW IF EXISTS pgvision.%I', v);
    END LOOP;
END
$drop$
"""


def upgrade() -> None:
    apply_sql(op, "functions/_model_view.v2.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
    op.execute("DROP TRIGGER models_view ON pgvision.models")
    op.execute(
        "CREATE TRIGGER models_view AFTER INSERT OR DELETE OR UPDATE OF kind, dims, metric, index_method, quantization "
        "ON pgvision.models FOR EACH ROW EXECUTE FUNCTION pgvision._model_view()"
    )
    # Rebuild every registered model's view through the trigger's UPDATE branch (names kept).
    op.execute("UPDATE pgvision.models SET quantization = quantization")


def downgrade() -> None:
    op.execute(_DROP_VIEWS)
    op.execute("DROP TRIGGER models_view ON pgvision.models")
    apply_sql(op, "functions/_model_view.v1.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER models_view AFTER INSERT OR DELETE ON pgvision.models "
        "FOR EACH ROW EXECUTE FUNCTION pgvision._model_view()"
    )
    # v1's INSERT branch, replayed per model in model_id order through a temporary copy of the
    # table (as revision 0004 does); its UPDATE of view_name reaches the real row.
    op.execute(
        """
        DO $rebuild$
        BEGIN
            UPDATE pgvision.models SET view_name = NULL;
            CREATE TEMPORARY TABLE pgvision_models_rebuild (LIKE pgvision.models) ON COMMIT DROP;
            CREATE TRIGGER rebuild AFTER INSERT ON pgvision_models_rebuild
                FOR EACH ROW EXECUTE FUNCTION pgvision._model_view();
            INSERT INTO pgvision_models_rebuild SELECT * FROM pgvision.models ORDER BY model_id;
            DROP TABLE pgvision_models_rebuild;
        END
        $rebuild$
        """
    )
