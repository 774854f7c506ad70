r"""Views follow the index; recall ties at full precision; every public function says its SQLSTATEs.

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

``recall_at_k.v4``: an ANN row ties the k-th exact distance by its full-precision distance,
not by the index's (a halfvec index's distances are rounded, about 1e-3 relative, and
counted rows farther than the k-th as ties); its header lists every SQLSTATE it raises.
Downgrade re-applies v3.

The ``COMMENT ON FUNCTION`` of search_images, similar_images, identify and identify_face
(what BI tools and ``\df+`` show) gets the complete list of SQLSTATEs the function raises,
``Fails (SQLSTATE): ...``: their released files' headers miss some (22023 for ef_search,
22004 for a NULL k or id) and are never edited. Downgrade removes the list again.
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


#: What each public function raises, appended to its COMMENT (recall_at_k's is in its v4 file).
FAILS = {
    "search_images": "22004 NULL query or k; 22023 k or ef_search outside 1..1000, query of another dimension "
                     "than the model's, zero (cosine) or overflowing query, a face model named, or several image "
                     "models and none the default; 42704 unknown model; 55000 no image model loaded yet.",
    "similar_images": "22004 NULL image_id or k; 22023 k or ef_search outside 1..1000, a face model named, or "
                      "several image models and none the default; P0002 no such image, or no embedding of that "
                      "model for it; 42704 unknown model; 55000 no image model loaded yet.",
    "identify": "22004 NULL query or candidates; 22023 candidates or ef_search outside 1..1000, query of another "
                "dimension than the model's, zero (cosine) or overflowing query, threshold or min_margin not a "
                "finite number >= 0, an image model named, or several face models and none the default; "
                "42704 unknown model; 55000 no face model loaded yet, or the model has no threshold "
                "(pass threshold => or run pgvision calibrate).",
    "identify_face": "22004 NULL face_id or candidates; 22023 candidates or ef_search outside 1..1000, threshold "
                     "or min_margin not a finite number >= 0, an image model named, or several face models and "
                     "none the default; P0002 no such face, or no embedding of that model for it; 42704 unknown "
                     "model; 55000 no face model loaded yet, or the model has no threshold.",
}
_MARK = " Fails (SQLSTATE): "

_SET_COMMENT = """
DO $comment$
DECLARE fn oid;
BEGIN
    SELECT p.oid INTO STRICT fn FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'pgvision' AND p.proname = {name};
    EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn::regprocedure, {text});
END
$comment$
"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _comment(name: str, expression: str) -> None:
    """COMMENT ON the one pgvision function called ``name``: ``expression`` over ``d``, its comment now."""
    text = expression.format(d="coalesce(pg_catalog.obj_description(fn, 'pg_proc'), '')")
    op.execute(_SET_COMMENT.format(name=_quote(name), text=text))


def upgrade() -> None:
    apply_sql(op, "functions/recall_at_k.v4.sql")
    for name, fails in FAILS.items():
        _comment(name, "{d} || " + _quote(_MARK + fails))
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
    apply_sql(op, "functions/recall_at_k.v3.sql")
    for name in FAILS:
        _comment(name, "pg_catalog.regexp_replace({d}, " + _quote(_MARK.replace("(", "\\(").replace(")", "\\)") + ".*$")
                 + ", '')")
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
