"""hardening: per-model view names never collide; recall_at_k's timings rounded.

``_model_view.v4``: models whose names differ only by case or punctuation (``coll``,
``COLL``) share a base view name, and v3's fallback ``vectors_<name>_<model_id>`` could be
taken by another model's view (a model named ``coll_9``): registering the second model then
failed. v4 takes the first free ``..._<model_id>_<n>``. Existing views keep their names.

``recall_at_k.v6``: ``ann_ms`` and ``exact_ms`` rounded to 3 decimals (same signature).

dlib's default threshold: a ``dlib`` model never calibrated (no ``pgvision.calibrations``
row) that still has the published 1:1 value 0.6 gets the open-set default 0.46
(``pgvision.faces.embed.DLIB_OPEN_SET_THRESHOLD``, measured on LFW: docs/faces.md); the
downgrade gives such a model 0.6 back.

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

#: dlib's published 1:1 threshold and the open-set default (as pgvision.faces.embed, copied:
#: a migration keeps the values it was written with).
DLIB_PUBLISHED = 0.6
DLIB_OPEN_SET = 0.46
_UNCALIBRATED_DLIB = (
    "UPDATE pgvision.models m SET threshold = {new} WHERE m.name = 'dlib' AND m.kind = 'face' "
    "AND m.threshold = {old}::real "
    "AND NOT EXISTS (SELECT 1 FROM pgvision.calibrations c WHERE c.model_id = m.model_id)"
)


def upgrade() -> None:
    apply_sql(op, "functions/_model_view.v4.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
    apply_sql(op, "functions/recall_at_k.v6.sql")
    op.execute(_UNCALIBRATED_DLIB.format(new=DLIB_OPEN_SET, old=DLIB_PUBLISHED))


def downgrade() -> None:
    op.execute(_UNCALIBRATED_DLIB.format(new=DLIB_PUBLISHED, old=DLIB_OPEN_SET))
    apply_sql(op, "functions/recall_at_k.v5.sql")
    apply_sql(op, "functions/_model_view.v3.sql")
    op.execute("REVOKE ALL ON FUNCTION pgvision._model_view() FROM PUBLIC")
