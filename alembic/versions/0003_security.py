"""Security: fixed search_path without pgvector's schema; thresholds finite and >= 0.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22

Issue 8 (hardening).

* Every function of the SQL API is re-applied as a new version written with
  ``@extschema:vector@`` (see :data:`pgvision.migrate.VECTOR_SCHEMA_TOKEN`): its
  ``search_path`` becomes ``pg_catalog, pgvision, pg_temp`` and pgvector's types, operators
  and functions are reached by schema-qualified names. Before, the path was
  ``pgvision, <pgvector schema>, pg_catalog, pg_temp``: a role allowed to create objects in
  pgvector's schema (often ``public``) could shadow ``current_setting``, ``=`` or
  ``format`` and run its code with the rights of whoever called ``search_images``
  (CVE-2018-1058 class).
* Identity fails closed: ``models.threshold``, ``models.min_margin`` and
  ``calibrations.threshold`` / ``min_margin`` must be finite and >= 0 (CHECK). PostgreSQL
  orders NaN above every number, so a NaN threshold used to match anyone. Existing bad
  rows: a model's bad threshold becomes NULL (identify then refuses with "run pgvision
  calibrate") and a bad min_margin becomes 0 *and* its threshold NULL too (never looser
  than before without a recalibration); bad calibration rows (history only) are deleted.
  A NOTICE says how many rows changed.
* ``model_stats`` v2 adds ``index_valid`` (false for an index a failed
  ``CREATE INDEX CONCURRENTLY`` left behind).
* Roles v2: ``pgvision_loader`` gets UPDATE only where the loader updates (see
  sql/roles.v2.sql).

Downgrade re-applies the previous versions and drops the constraints.
"""

from alembic import op

from pgvision.migrate import apply_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

NEW = [
    "functions/_resolve_model.v2.sql",
    "functions/_check_query.v2.sql",
    "functions/_similarity.v2.sql",
    "functions/_nearest.v2.sql",
    "functions/_identify.v3.sql",
    "functions/search_images.v2.sql",
    "functions/similar_images.v2.sql",
    "functions/identify.v3.sql",
    "functions/identify_face.v3.sql",
    "functions/recall_at_k.v2.sql",
]
OLD = [
    "functions/_resolve_model.v1.sql",
    "functions/_check_query.v1.sql",
    "functions/_similarity.v1.sql",
    "functions/_nearest.v1.sql",
    "functions/_identify.v2.sql",
    "functions/search_images.v1.sql",
    "functions/similar_images.v1.sql",
    "functions/identify.v2.sql",
    "functions/identify_face.v2.sql",
    "functions/recall_at_k.v1.sql",
]

#: finite and >= 0; NaN > every number in PostgreSQL, so ``< 'Infinity'`` also rules out NaN.
FINITE = "({col} >= 0 AND {col} < 'Infinity'::real)"
CONSTRAINTS = [
    ("models", "models_threshold_finite", FINITE.format(col="threshold")),
    ("models", "models_min_margin_finite", FINITE.format(col="min_margin")),
    ("calibrations", "calibrations_threshold_finite", FINITE.format(col="threshold")),
    ("calibrations", "calibrations_min_margin_finite", FINITE.format(col="min_margin")),
]


def upgrade() -> None:
    bad = "NOT " + FINITE
    op.execute(
        f"""
        DO $fix$
        DECLARE n bigint; c bigint;
        BEGIN
            UPDATE pgvision.models SET threshold = NULL,
                   min_margin = CASE WHEN {bad.format(col='min_margin')} THEN 0 ELSE min_margin END
            WHERE {bad.format(col='threshold')} OR {bad.format(col='min_margin')};
            GET DIAGNOSTICS n = ROW_COUNT;
            DELETE FROM pgvision.calibrations
            WHERE {bad.format(col='threshold')} OR {bad.format(col='min_margin')};
            GET DIAGNOSTICS c = ROW_COUNT;
            IF n > 0 OR c > 0 THEN
                RAISE NOTICE 'pgvision 0003: % model(s) had a NaN, infinite or negative threshold or min_margin: threshold set to NULL (run pgvision calibrate); % such calibration row(s) deleted', n, c;
            END IF;
        END
        $fix$
        """
    )
    for table, name, check in CONSTRAINTS:
        op.execute(f"ALTER TABLE pgvision.{table} ADD CONSTRAINT {name} CHECK {check}")
    for path in NEW:
        apply_sql(op, path)
    apply_sql(op, "views/model_stats.v2.sql")
    apply_sql(op, "roles.v2.sql")


def downgrade() -> None:
    op.execute("DROP VIEW pgvision.model_stats")  # a view cannot lose a column in place
    apply_sql(op, "views/model_stats.v1.sql")
    apply_sql(op, "roles.v1.sql")  # grants SELECT on the re-created view again
    for path in OLD:
        apply_sql(op, path)
    for table, name, _ in CONSTRAINTS:
        op.execute(f"ALTER TABLE pgvision.{table} DROP CONSTRAINT {name}")
