"""Per-model view names never collide (sql/functions/_model_view.v4.sql)."""

from __future__ import annotations

import pytest

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
        # a dlib model registered with the published 0.6 and never calibrated gets the open-set default
        c.execute(
            "INSERT INTO pgvision.models (name, kind, dims, metric, threshold) VALUES ('dlib', 'face', 128, 'l2', 0.6)"
        )
    migrate.downgrade(database_url, "0017")
    migrate.upgrade(database_url, "head")
    with connect(database_url, autocommit=True) as c:
        assert c.execute("SELECT threshold FROM pgvision.models WHERE name = 'dlib'").fetchone() == (
            pytest.approx(0.46),
        )
        dlib = c.execute("SELECT model_id FROM pgvision.models WHERE name = 'dlib'").fetchone()[0]
    migrate.downgrade(database_url, "0017")
    with connect(database_url, autocommit=True) as c:
        assert c.execute("SELECT threshold FROM pgvision.models WHERE name = 'dlib'").fetchone() == (
            pytest.approx(0.6),
        )
        c.execute(
            "INSERT INTO pgvision.calibrations (model_id, threshold, genuine_pairs, impostor_pairs) "
            "VALUES (%s, 0.6, 10, 10)",
            (dlib,),
        )  # a calibrated 0.6 is the user's own: kept
    for step in ("0017", "head"):
        (migrate.downgrade if step == "0017" else migrate.upgrade)(database_url, step)
        with connect(database_url, autocommit=True) as c:
            src = c.execute("SELECT prosrc FROM pg_proc WHERE proname = '_model_view'").fetchone()[0]
            assert ("WHILE to_regclass" in src) == (step == "head")
            assert c.execute("SELECT view_name FROM pgvision.models WHERE name = 'coll'").fetchall() == [
                ("vectors_coll",)
            ]
            assert c.execute("SELECT threshold FROM pgvision.models WHERE name = 'dlib'").fetchone() == (
                pytest.approx(0.6),
            )
            assert c.execute("SELECT count(*) FROM pgvision.vectors_coll").fetchone() == (0,)


def _ivfflat_model(conn, name="ladder", n=300, dims=8):
    """n random 8-d vectors (seed 0) in an IVFFlat index of 8 lists, probes 2."""
    import hashlib

    import numpy as np

    from pgvision.index.ddl import set_index
    from pgvision.ingest.pg_copy import ImageRecord, copy_image_embeddings

    model_id = register_model(conn, ModelSpec(name, "image", dims, "l2"))
    x = np.random.default_rng(0).standard_normal((n, dims)).astype(np.float32)
    records = [ImageRecord(hashlib.sha256(f"{name}{i}".encode()).digest(), f"mem://{i}", None) for i in range(n)]
    copy_image_embeddings(conn, model_id, records, x)
    set_index(conn, name, method="ivfflat", lists=8, probes=2)
    return model_id


def test_an_interrupted_recall_ladder_leaves_the_previous_setting(conn, monkeypatch):
    from pgvision.index import recall_target

    _ivfflat_model(conn)
    calls = []
    real = recall_target.measure

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C (or a kill) while the second rung is measured
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(recall_target, "measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        recall_target.choose_setting(conn, "ladder", 1.0)
    assert conn.execute(
        "SELECT probes, target_recall, measured_recall FROM pgvision.models WHERE name = 'ladder'"
    ).fetchone() == (2, None, None)


def test_another_index_clears_the_old_recall_measurement(conn):
    from pgvision.index import recall_target
    from pgvision.index.ddl import set_index

    _ivfflat_model(conn)
    choice = recall_target.choose_setting(conn, "ladder", 0.5)
    assert conn.execute("SELECT measured_recall, recall_rows FROM pgvision.models").fetchone() == (
        pytest.approx(choice.recall, abs=1e-6),
        300,
    )
    set_index(conn, "ladder", method="hnsw")
    assert conn.execute("SELECT target_recall, measured_recall, recall_rows FROM pgvision.models").fetchone() == (
        0.5,
        None,
        None,
    )


def test_target_recall_on_a_model_too_small_to_measure_says_so(database_url):
    import numpy as np
    from click.testing import CliRunner

    from pgvision.cli import main
    from pgvision.server.connection import connect

    with connect(database_url, autocommit=True) as c:
        from pgvision.ingest.pg_copy import ImageRecord, copy_image_embeddings

        model_id = register_model(c, ModelSpec("tiny", "image", 2, "l2"))
        copy_image_embeddings(
            c,
            model_id,
            [ImageRecord(bytes([i]) * 32, f"mem://{i}", None) for i in range(5)],
            np.arange(10, dtype=np.float32).reshape(5, 2),
        )
    result = CliRunner().invoke(
        main, ["db", "index", "tiny", "--target-recall", "0.9", "--quiet"], env={"DATABASE_URL": database_url}
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == (
        "tiny: recall not measured: 5 rows, too few to measure recall@10 (at least 12); exact and ANN results agree "
        "at this size, it is measured again after a load"
    )


def test_rerunning_a_registration_uses_no_model_id(conn):
    """ids stay dense: a rerun's registration (every load does one) only reads the row."""
    first = register_model(conn, ModelSpec("a", "image", 2, "l2"))
    assert register_model(conn, ModelSpec("a", "image", 2, "l2")) == first
    assert register_model(conn, ModelSpec("b", "image", 2, "l2")) == first + 1


def test_db_current_prints_the_revision(database_url):
    from click.testing import CliRunner

    from pgvision.cli import main

    result = CliRunner().invoke(main, ["db", "current", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert result.stdout == "0018 (head)\n"


def test_recall_at_k_rounds_its_milliseconds(conn):
    _ivfflat_model(conn)
    row = conn.execute(
        "SELECT recall, ann_ms, exact_ms, ann_ms::numeric = round(ann_ms::numeric, 3), "
        "exact_ms::numeric = round(exact_ms::numeric, 3) FROM pgvision.recall_at_k('ladder', 10, 20)"
    ).fetchone()
    assert 0 < row[0] <= 1 and row[1] >= 0 and row[2] > 0
    assert row[3:] == (True, True)
