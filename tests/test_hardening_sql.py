"""Per-model view names never collide (sql/functions/_model_view.v4.sql)."""

from __future__ import annotations

from pgvision.registry import ModelSpec, register_model


def test_models_differing_only_by_case_get_free_view_names(conn):
    """coll -> vectors_coll; a model literally named coll_<id of the next model> takes
    vectors_coll_<id>; COLL then finds vectors_coll and vectors_coll_<id> taken: _2."""
    a = register_model(conn, ModelSpec("coll", "image", 2, "l2"))
    seq = "pg_get_serial_sequence('pgvision.models', 'model_id')"
    n = conn.execute(f"SELECT nextval({seq})").fetchone()[0]
    conn.execute(f"SELECT setval({seq}, %s, false)", (n,))  # the next model gets id n
    b = register_model(conn, ModelSpec(f"coll_{n + 1}", "image", 2, "l2"))
    c = register_model(conn, ModelSpec("COLL", "image", 2, "l2"))
    assert (b, c) == (n, n + 1)
    views = conn.execute("SELECT model_id, view_name FROM pgvision.models ORDER BY model_id").fetchall()
    assert views == [(a, "vectors_coll"), (b, f"vectors_coll_{n + 1}"), (c, f"vectors_coll_{n + 1}_2")]
    for _, view in views:
        assert conn.execute(f"SELECT count(*) FROM pgvision.{view}").fetchone() == (0,)
