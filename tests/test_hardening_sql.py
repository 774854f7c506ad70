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


def test_migration_0018_round_trip_keeps_the_views(database_url):
    from pgvision import migrate
    from pgvision.server.connection import connect

    with connect(database_url, autocommit=True) as c:
        register_model(c, ModelSpec("coll", "image", 2, "l2"))
    for step in ("0017", "head"):
        (migrate.downgrade if step == "0017" else migrate.upgrade)(database_url, step)
        with connect(database_url, autocommit=True) as c:
            src = c.execute("SELECT prosrc FROM pg_proc WHERE proname = '_model_view'").fetchone()[0]
            assert ("WHILE to_regclass" in src) == (step == "head")
            assert c.execute("SELECT view_name FROM pgvision.models").fetchall() == [("vectors_coll",)]
            assert c.execute("SELECT count(*) FROM pgvision.vectors_coll").fetchone() == (0,)
