"""Fast defaults at scale: range search, bounded walks, binary models re-ranked deeper.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04

* ``search_images.v5`` gains ``max_distance`` (range search: of the k nearest, only those
  at that distance or nearer). The cut is applied to the rows the ordinary top-k walk
  found, so an answer that is empty costs what a full one does. A new argument changes
  the function's signature: the v4 function is dropped and v5 created, with the same
  grants.
* ``_nearest.v4``: every iterative scan it starts is bounded explicitly
  (``hnsw.max_scan_tuples``, ``ivfflat.max_probes``), and binary-quantized models re-rank
  10 x ef_search Hamming candidates (at most 10,000) found by an iterative scan, where the
  HNSW candidate list alone stopped at 1,000.
* ``_model_ann.v3``: the generated ``_ann`` re-ranks binary models the same way, and
  search_images' generated branches apply ``max_distance``. The trigger is fired once to
  rewrite both for the models registered so far.

* ``models.index_shape``: ``auto`` (the default: an HNSW index's ``m``, ``ef_construction``
  and halfvec follow the row count, dims and the server's memory when it is built,
  ``pgvision.index.shape``) or ``manual`` (the user chose them with ``pgvision db index``).
  Models registered before are ``manual`` when their shape is not pgvector's default
  (m 16, ef_construction 64, full precision), ``auto`` otherwise.

Downgrade drops the column and v5 and re-applies ``search_images.v4`` (with the SQLSTATE list revision 0013
appended to its comment), ``_nearest.v3`` and ``_model_ann.v2``, and fires the trigger again.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _each_search_images(statement: str) -> str:
    """A DO block that runs ``statement`` (a format() string, %s the signature) on every
    pgvision function called search_images."""
    return f"""
DO $each$
DECLARE fn regprocedure;
BEGIN
    FOR fn IN SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
              WHERE p.pronamespace = 'pgvision'::regnamespace AND p.proname = 'search_images' LOOP
        EXECUTE format('{statement}', fn);
    END LOOP;
END
$each$
"""


#: Drops every pgvision function called search_images (one per released version: adding an
#: argument changes the signature, so CREATE OR REPLACE would add an overload instead).
_DROP_SEARCH_IMAGES = _each_search_images("DROP FUNCTION %s")
_GRANT_SEARCH_IMAGES = _each_search_images("GRANT EXECUTE ON FUNCTION %s TO pgvision_reader, pgvision_loader")

#: What revision 0013 appended to search_images.v4's comment (its released file lacks it).
_V4_FAILS = (
    " Fails (SQLSTATE): 22004 NULL query or k; 22023 k or ef_search outside 1..1000, query of another dimension "
    "than the model's, zero (cosine) or overflowing query, a face model named, or several image "
    "models and none the default; 42704 unknown model; 55000 no image model loaded yet."
)


def _fire_models_trigger() -> None:
    # A statement trigger fires even when no row changes: _ann and search_images' branches
    # are rewritten for the models registered so far.
    op.execute("UPDATE pgvision.models SET kind = kind WHERE false")


def upgrade() -> None:
    op.execute(
        "ALTER TABLE pgvision.models ADD COLUMN index_shape text NOT NULL DEFAULT 'auto' "
        "CHECK (index_shape IN ('auto', 'manual'))"
    )
    op.execute(
        "UPDATE pgvision.models SET index_shape = 'manual' "
        "WHERE (hnsw_m, hnsw_ef_construction, quantization) <> (16, 64, 'none')"
    )
    op.execute(
        "COMMENT ON COLUMN pgvision.models.index_shape IS 'auto: the HNSW index''s m, ef_construction and halfvec "
        "follow the row count, dims and server memory when it is built (pgvision.index.shape); manual: chosen "
        "with pgvision db index'"
    )
    op.execute(_DROP_SEARCH_IMAGES)
    apply_sql(op, "functions/search_images.v5.sql")
    op.execute(_GRANT_SEARCH_IMAGES)
    apply_sql(op, "functions/_nearest.v4.sql")
    apply_sql(op, "functions/_model_ann.v3.sql")
    _fire_models_trigger()


def downgrade() -> None:
    op.execute(_DROP_SEARCH_IMAGES)
    apply_sql(op, "functions/search_images.v4.sql")
    op.execute(_GRANT_SEARCH_IMAGES)
    text = _V4_FAILS.replace("'", "''")
    op.execute(
        "DO $comment$ DECLARE fn regprocedure; BEGIN "
        "SELECT p.oid::regprocedure INTO STRICT fn FROM pg_catalog.pg_proc p "
        "WHERE p.pronamespace = 'pgvision'::regnamespace AND p.proname = 'search_images'; "
        "EXECUTE format('COMMENT ON FUNCTION %s IS %L', fn, "
        f"pg_catalog.obj_description(fn, 'pg_proc') || '{text}'); END $comment$"
    )
    apply_sql(op, "functions/_nearest.v3.sql")
    apply_sql(op, "functions/_model_ann.v2.sql")
    _fire_models_trigger()
    op.execute("ALTER TABLE pgvision.models DROP COLUMN index_shape")
