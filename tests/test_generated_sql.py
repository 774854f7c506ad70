"""The SQL that the database writes for itself, compared with a checked-in snapshot.

Registering a model fires two triggers on ``pgvision.models`` that generate code:
``pgvision._model_ann()`` (sql/functions/_model_ann.v2.sql) rewrites ``pgvision._ann``,
the per-model branches of the installed ``pgvision.search_images`` and each face model's
identity-template index; ``pgvision._model_view()`` creates a view per model. So the
functions in the database are not the files in sql/: this test shows what they are.

Three models, registered in this order (model_id 1, 2, 3):
``snap-cosine`` (image, 4-d, cosine), ``snap-l2-half`` (image, 3-d, L2, halfvec index) and
``snap-face`` (face, 2-d, L2). The installed definitions (``pg_get_functiondef``,
``pg_get_viewdef``, ``pg_get_indexdef``) must equal tests/snapshots/generated_sql.sql.

After changing a generator on purpose, regenerate the snapshot and review its diff::

    PGVISION_UPDATE_SNAPSHOTS=1 python -m pytest tests/test_generated_sql.py
    git diff tests/snapshots/
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import psycopg

from pgvision.registry import ModelSpec, register_model

SNAPSHOT = Path(__file__).resolve().parent / "snapshots" / "generated_sql.sql"
UPDATE_ENV = "PGVISION_UPDATE_SNAPSHOTS"

MODELS = [
    (ModelSpec("snap-cosine", "image", 4, "cosine"), "none"),
    (ModelSpec("snap-l2-half", "image", 3, "l2"), "halfvec"),
    (ModelSpec("snap-face", "face", 2, "l2", threshold=0.6), "none"),
]


def generated_sql(conn: psycopg.Connection) -> str:
    """Every generated object's installed definition, in a fixed order, as one text."""
    parts = [
        "-- What pgvision's triggers generate for the models of tests/test_generated_sql.py.\n"
        f"-- Regenerate: {UPDATE_ENV}=1 python -m pytest tests/test_generated_sql.py\n"
    ]
    for name in ("_ann", "search_images"):
        for (definition,) in conn.execute(  # every overload, should there be several
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'pgvision' AND p.proname = %s ORDER BY pg_get_function_identity_arguments(p.oid)",
            (name,),
        ):
            parts.append(f"-- function pgvision.{name}\n{definition.rstrip()}\n")
    for view, definition, comment in conn.execute(
        "SELECT v.view_name, pg_get_viewdef(format('pgvision.%I', v.view_name)::regclass), "
        "obj_description(format('pgvision.%I', v.view_name)::regclass, 'pg_class') "
        "FROM pgvision.models v ORDER BY v.model_id"
    ):
        parts.append(f"-- view pgvision.{view}\n{definition.rstrip()}\n-- comment: {comment}\n")
    for (definition,) in conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'pgvision' AND tablename = 'identity_templates' "
        "AND indexname ~ '^identity_templates_model_[0-9]+_hnsw$' ORDER BY indexname"
    ):
        parts.append(f"-- index on pgvision.identity_templates\n{definition}\n")
    return "\n".join(parts)


def test_generated_sql_matches_the_snapshot(conn):
    for spec, quantization in MODELS:
        model_id = register_model(conn, spec)
        if quantization != "none":
            conn.execute("UPDATE pgvision.models SET quantization = %s WHERE model_id = %s", (quantization, model_id))
    assert conn.execute("SELECT array_agg(model_id ORDER BY model_id) FROM pgvision.models").fetchone()[0] == [1, 2, 3]
    got = generated_sql(conn)
    if os.environ.get(UPDATE_ENV) == "1":
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(got)
    want = SNAPSHOT.read_text() if SNAPSHOT.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            want.splitlines(keepends=True), got.splitlines(keepends=True),
            fromfile=str(SNAPSHOT.relative_to(SNAPSHOT.parents[2])), tofile="installed in the database",
        )
    )
    assert got == want, (
        f"the generated SQL differs from the snapshot; if the change is intended, rerun with {UPDATE_ENV}=1 "
        f"and review git diff tests/snapshots/\n{diff}"
    )
