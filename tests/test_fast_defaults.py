"""Fast defaults: range search (max_distance), binary models re-ranked past 1,000 candidates,
the index shape chosen by size, and the rebuild that swaps indexes atomically.

Range search uses the model 'tiny' (3-d, L2). The query [1, 0, 0] is at distance
a: 0, b: sqrt(0.02) = 0.1414, e: sqrt(0.5) = 0.7071, c and d: sqrt(2) = 1.4142;
the query [-1, 0, 0] at e: sqrt(2.5) = 1.5811, c and d: 1.4142, b: sqrt(3.62) = 1.9026, a: 2.
"""

from __future__ import annotations

import numpy as np
import psycopg
import pytest

from pgvision import migrate
from sqlhelpers import add_images

ROWS = [
    ("a", "cat", [1.0, 0.0, 0.0]),
    ("b", "cat", [0.9, 0.1, 0.0]),
    ("c", "dog", [0.0, 1.0, 0.0]),
    ("d", "dog", [0.0, 0.0, 1.0]),
    ("e", "bird", [0.5, 0.5, 0.0]),
]


@pytest.fixture
def tiny(conn):
    return add_images(conn, "tiny", ROWS)


def ids(conn, sql, *args):
    return [r[0] for r in conn.execute(sql, args).fetchall()]


@pytest.mark.parametrize(
    "max_distance, expected",
    [
        (None, "abecd"),
        (0.75, "abe"),
        (0.1414, "a"),
        (0.1415, "ab"),
        (0.0, "a"),
        (3.0, "abecd"),
    ],
)
def test_max_distance_keeps_only_hits_that_near(conn, tiny, max_distance, expected):
    got = ids(
        conn,
        "SELECT image_id FROM pgvision.search_images('[1,0,0]', 5, max_distance => %s)",
        max_distance,
    )
    assert got == [tiny[x] for x in expected]


def test_max_distance_with_nothing_that_near_is_empty(conn, tiny):
    """The nearest image to [-1, 0, 0] is c at 1.4142: nothing within 1.4."""
    assert (
        ids(
            conn,
            "SELECT image_id FROM pgvision.search_images('[-1,0,0]', 5, max_distance => 1.4)",
        )
        == []
    )
    assert ids(
        conn,
        "SELECT image_id FROM pgvision.search_images('[-1,0,0]', 5, max_distance => 1.5)",
    ) == [tiny["c"], tiny["d"]]


def test_max_distance_with_a_filter_and_k(conn, tiny):
    """Label 'cat' leaves a (0) and b (0.1414); k = 1 keeps the nearest one only."""
    sql = "SELECT image_id FROM pgvision.search_images('[1,0,0]', %s, label => 'cat', max_distance => %s)"
    assert ids(conn, sql, 5, 0.2) == [tiny["a"], tiny["b"]]
    assert ids(conn, sql, 5, 0.1) == [tiny["a"]]
    assert ids(conn, sql, 1, 0.2) == [tiny["a"]]
    assert (
        ids(
            conn,
            "SELECT image_id FROM pgvision.search_images('[1,0,0]', 5, label => 'dog', max_distance => 1.4)",
        )
        == []
    )


@pytest.mark.parametrize(
    "value, message",
    [
        (
            "'NaN'",
            (
                "max_distance must be a distance >= 0 in model tiny's metric (l2), got NaN: pass NULL for no limit, "
                "or e.g. 0.5"
            ),
        ),
        (
            "-1",
            (
                "max_distance must be a distance >= 0 in model tiny's metric (l2), got -1: pass NULL for no limit, "
                "or e.g. 0.5"
            ),
        ),
    ],
)
def test_bad_max_distance_raises(conn, tiny, value, message):
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        conn.execute(f"SELECT * FROM pgvision.search_images('[1,0,0]', 5, max_distance => {value})")
    assert err.value.diag.message_primary == message


def test_binary_model_reranks_past_a_thousand_hamming_candidates(conn):
    """16-d cosine model, binary-quantized HNSW index. Query q = [1, .1 x 15]: all 16 bits set.

    1,100 decoys [.1 + u, 15 coordinates of +-1] (u in 0..0.5) with at most 2 of the 15
    negative (121 bit patterns, 9-10 decoys each): Hamming distance 0-2 to q, cosine
    distance 0.5-1.1. The target t = [1, -.01, -.01, -.01, .1 x 12] has 3 negative
    coordinates (Hamming 3) and cosine distance 0.0159 to q: the true nearest. Its Hamming
    rank is 1,101, past the 1,000 candidates that an HNSW scan stops at (ef_search's
    largest value); the iterative scan's 10 x ef_search candidates reach it.
    """
    from itertools import combinations

    from pgvision.index.ddl import set_index

    patterns = [(), *((i,) for i in range(1, 16)), *combinations(range(1, 16), 2)]
    assert len(patterns) == 121
    rng = np.random.default_rng(0)
    decoys = []
    for i, u in enumerate(rng.uniform(0, 0.5, 1100)):
        flips = patterns[i % len(patterns)]
        decoys.append(
            (
                f"d{i}",
                None,
                [0.1 + float(u)] + [-1.0 if j in flips else 1.0 for j in range(1, 16)],
            )
        )
    got = add_images(
        conn,
        "bits",
        [*decoys, ("t", None, [1.0, -0.01, -0.01, -0.01] + [0.1] * 12)],
        metric="cosine",
    )
    set_index(conn, "bits", quantization="binary")
    q = "[" + ",".join(["1"] + ["0.1"] * 15) + "]"
    hamming_rank = conn.execute(
        "SELECT r FROM (SELECT image_id, rank() OVER (ORDER BY binary_quantize(embedding::vector(16))::bit(16) "
        "<~> binary_quantize(%s::vector(16))::bit(16)) r FROM pgvision.image_embeddings) s WHERE image_id = %s",
        (q, got["t"]),
    ).fetchone()[0]
    assert hamming_rank == 1101
    rows = conn.execute(
        "SELECT image_id, round(distance::numeric, 4)::float8 FROM pgvision.search_images(%s, 1, ef_search => 1000)",
        (q,),
    ).fetchall()
    assert rows == [(got["t"], 0.0159)]
    # recall_at_k's ANN side (_nearest) re-ranks the same way
    near = conn.execute(
        "SELECT n.item_id FROM pgvision.models m, pgvision._nearest(m, %s, 1, ef_search => 1000) n "
        "WHERE m.name = 'bits'",
        (q,),
    ).fetchall()
    assert near == [(got["t"],)]
    # and the settings it changed are restored
    assert conn.execute(
        "SELECT current_setting('hnsw.iterative_scan'), current_setting('hnsw.max_scan_tuples')"
    ).fetchone() == ("off", "20000")


def test_migration_0016_round_trip_with_data(empty_database_url):
    """0015 -> 0016 -> 0015 -> 0016 with a model and images stored (written in SQL, as 0015 has them):
    downgrade gives back the 6-argument search_images (no max_distance) with its SQLSTATE list,
    and drops models.index_shape; upgrade returns both, with the reader's EXECUTE grant."""
    url = empty_database_url
    migrate.upgrade(url, "0015")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(
            "INSERT INTO pgvision.models (name, kind, dims, metric, is_default, hnsw_m) "
            "VALUES ('tiny', 'image', 3, 'l2', true, 16), ('dense', 'image', 3, 'l2', false, 32)"
        )
        c.execute(
            "INSERT INTO pgvision.images (sha256, uri) SELECT sha256(x::bytea), 'file:///' || x "
            "FROM unnest(ARRAY['a', 'b', 'c']) x"
        )
        c.execute(
            "INSERT INTO pgvision.image_embeddings (model_id, image_id, embedding) "
            "SELECT 1, image_id, (CASE uri WHEN 'file:///a' THEN '[1,0,0]' WHEN 'file:///b' THEN '[0.9,0.1,0]' "
            "ELSE '[0,1,0]' END)::vector FROM pgvision.images"
        )
        a, b = [r[0] for r in c.execute("SELECT image_id FROM pgvision.images ORDER BY uri LIMIT 2")]
    migrate.upgrade(url, "0016")
    with psycopg.connect(url, autocommit=True) as c:
        assert ids(c, "SELECT image_id FROM pgvision.search_images('[1,0,0]', 5, max_distance => 0.1)") == [a]
        assert c.execute("SELECT name, index_shape FROM pgvision.models ORDER BY name").fetchall() == [
            ("dense", "manual"),
            ("tiny", "auto"),
        ]
    migrate.downgrade(url, "0015")
    with psycopg.connect(url, autocommit=True) as c:
        assert ids(c, "SELECT image_id FROM pgvision.search_images('[1,0,0]', 2)") == [a, b]
        with pytest.raises(psycopg.errors.UndefinedFunction):
            c.execute("SELECT * FROM pgvision.search_images('[1,0,0]', 2, max_distance => 0.1)")
        assert (
            "Fails (SQLSTATE): 22004"
            in c.execute("SELECT obj_description('pgvision.search_images'::regproc, 'pg_proc')").fetchone()[0]
        )
        assert c.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'models' "
            "AND column_name = 'index_shape'"
        ).fetchone() == (0,)
    migrate.upgrade(url, "0016")
    with psycopg.connect(url, autocommit=True) as c:
        assert ids(c, "SELECT image_id FROM pgvision.search_images('[1,0,0]', 5, max_distance => 0.1)") == [a]
        assert c.execute(
            "SELECT has_function_privilege('pgvision_reader', 'pgvision.search_images'::regproc, 'EXECUTE')"
        ).fetchone() == (True,)


# --- The index shape chosen by size -------------------------------------------------------

GIB = 1024**3


@pytest.mark.parametrize(
    "rows, dims, memory, expected",
    [
        (100_000, 512, 24 * GIB, (16, 64, "none")),
        (249_999, 512, 24 * GIB, (16, 64, "none")),
        (250_000, 512, 24 * GIB, (32, 128, "none")),
        # 1M x 512 at m 32: (112 + 2,056 + 1,057) bytes a vector = 3.0 GiB of graph:
        # within a quarter of 24 GiB (6), above a quarter of 8 GiB (2)
        (1_000_000, 512, 24 * GIB, (32, 128, "none")),
        (1_000_000, 512, 8 * GIB, (32, 128, "halfvec")),
        # over 2,000 dims the index is halfvec whatever the rule (ddl.HALFVEC_ABOVE)
        (1_000_000, 3000, 1 * GIB, (32, 128, "none")),
    ],
)
def test_shape_rule(rows, dims, memory, expected):
    from pgvision.index.shape import choose_shape

    got = choose_shape(rows, dims, memory)
    assert (got.m, got.ef_construction, got.quantization) == expected


def test_shape_reason_names_the_rule():
    from pgvision.index.shape import choose_shape

    assert choose_shape(1_000_000, 512, 8 * GIB).reason == (
        "1,000,000 rows >= 250,000: m 32, ef_construction 128; graph 3.0 GB > 25% of 8.0 GB: halfvec"
    )


def test_server_memory_is_effective_cache_size_over_three_quarters(conn):
    from pgvision.index.shape import server_memory_bytes

    conn.execute("SET effective_cache_size = '3GB'")
    assert server_memory_bytes(conn) == 4 * GIB


def _reloptions(conn, name):
    return conn.execute("SELECT reloptions FROM pg_class WHERE relname = %s", (name,)).fetchone()[0]


def _vectors(n, dims, seed=0):
    rng = np.random.default_rng(seed)
    return [(f"v{i}", None, [float(x) for x in row]) for i, row in enumerate(rng.standard_normal((n, dims)))]


def test_build_after_load_takes_the_shape_of_the_size(conn, monkeypatch):
    """An auto model built with 300 rows, the dense rule moved to 200 rows: m 32 / 128."""
    from pgvision.index import ddl, shape

    add_images(conn, "auto", _vectors(300, 4))
    model_id = conn.execute("SELECT model_id FROM pgvision.models WHERE name = 'auto'").fetchone()[0]
    monkeypatch.setattr(shape, "DENSE_FROM_ROWS", 200)
    conn.execute(f"DROP INDEX IF EXISTS pgvision.image_embeddings_model_{model_id}_hnsw")
    name = ddl.ensure_index(conn, model_id)
    assert _reloptions(conn, name) == ["m=32", "ef_construction=128"]
    assert conn.execute("SELECT hnsw_m, hnsw_ef_construction, index_shape FROM pgvision.models").fetchone() == (
        32,
        128,
        "auto",
    )
    # a shape given by hand is kept: the model becomes manual
    ddl.set_index(conn, "auto", m=8, ef_construction=32)
    assert _reloptions(conn, name) == ["m=8", "ef_construction=32"]
    assert conn.execute("SELECT index_shape FROM pgvision.models").fetchone() == ("manual",)
    conn.execute(f"DROP INDEX pgvision.{name}")
    ddl.ensure_index(conn, model_id)
    assert _reloptions(conn, name) == ["m=8", "ef_construction=32"]


def test_rebuild_to_target_swaps_the_index(conn):
    from pgvision.index import ddl
    from pgvision.index.rebuild import rebuild_to_target

    got = add_images(conn, "r", _vectors(500, 8))
    model_id = conn.execute("SELECT model_id FROM pgvision.models WHERE name = 'r'").fetchone()[0]
    name = ddl.ensure_index(conn, model_id)
    q = "[1,0,0,0,0,0,0,0]"
    exact = ids(
        conn,
        "SELECT image_id FROM pgvision.image_embeddings ORDER BY embedding <-> %s LIMIT 5",
        q,
    )
    done = rebuild_to_target(conn, "r", m=8, ef_construction=32)
    assert done.index == name
    assert _reloptions(conn, name) == ["m=8", "ef_construction=32"]
    assert conn.execute(
        "SELECT count(*) FROM pg_indexes WHERE indexname LIKE %s",
        (f"%model_{model_id}%",),
    ).fetchone() == (1,)
    assert conn.execute("SELECT hnsw_m, hnsw_ef_construction, index_shape FROM pgvision.models").fetchone() == (
        8,
        32,
        "manual",
    )
    assert ids(conn, "SELECT image_id FROM pgvision.search_images(%s, 5)", q) == exact
    assert len(got) == 500


def test_rebuild_killed_mid_build_leaves_the_old_index(database_url, conn):
    """kill -9 of the rebuilding process while its CONCURRENTLY build waits for a writer:
    the old index stays, valid and used; the model's row is unchanged; a rerun completes."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from psycopg.conninfo import make_conninfo

    from pgvision.index import ddl
    from pgvision.index.rebuild import rebuild_to_target
    from pgvision.server.connection import connect

    add_images(conn, "r", _vectors(500, 8))
    model_id = conn.execute("SELECT model_id FROM pgvision.models WHERE name = 'r'").fetchone()[0]
    name = ddl.ensure_index(conn, model_id)
    old_oid = conn.execute("SELECT %s::regclass::oid", (f"pgvision.{name}",)).fetchone()[0]
    blocker = psycopg.connect(database_url)  # an open writer: CREATE INDEX CONCURRENTLY waits for it
    blocker.execute(
        "UPDATE pgvision.image_embeddings SET embedding = embedding WHERE image_id = "
        "(SELECT min(image_id) FROM pgvision.image_embeddings)"
    )
    url = make_conninfo(database_url, application_name="pgvision-rebuild-killed")
    code = (
        "import sys; from pgvision.server.connection import connect; from pgvision.index.rebuild import "
        "rebuild_to_target; rebuild_to_target(connect(sys.argv[1], autocommit=True), 'r', m=8, ef_construction=32)"
    )
    loader = str(Path(__file__).resolve().parents[1] / "loader")
    child = subprocess.Popen(
        [sys.executable, "-c", code, url],
        env={
            **os.environ,
            "PYTHONPATH": loader + os.pathsep + os.environ.get("PYTHONPATH", ""),
        },
    )
    try:
        for _ in range(300):
            phase = conn.execute(
                "SELECT phase FROM pg_stat_progress_create_index WHERE relid = 'pgvision.image_embeddings'::regclass"
            ).fetchone()
            if phase and phase[0].startswith("waiting for writers"):
                break
            assert child.poll() is None, "the rebuild ended before it could be killed"
            time.sleep(0.1)
        else:
            pytest.fail("the rebuild never reached its build")
        assert conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass",
            (f"pgvision.{name}_rebuild",),
        ).fetchone() == (False,)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        # client_connection_check_interval: the server ends the build whose client is gone
        for _ in range(100):
            if conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgvision-rebuild-killed'"
            ).fetchone() == (0,):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the killed client's build still runs on the server")
    finally:
        blocker.rollback()
        blocker.close()
        if child.poll() is None:
            child.kill()
    assert conn.execute("SELECT %s::regclass::oid", (f"pgvision.{name}",)).fetchone() == (old_oid,)
    assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = %s", (old_oid,)).fetchone() == (True,)
    assert _reloptions(conn, name) == ["m=16", "ef_construction=64"]
    assert conn.execute("SELECT hnsw_m, index_shape FROM pgvision.models").fetchone() == (16, "auto")
    q = "[1,0,0,0,0,0,0,0]"
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                f"EXPLAIN SELECT image_id FROM pgvision.image_embeddings WHERE model_id = {model_id} "
                f"ORDER BY embedding::vector(8) <-> '{q}'::vector(8) LIMIT 5"
            )
        )
    assert f"Index Scan using {name} " in plan
    # the rerun drops the leftover and completes
    with connect(database_url, autocommit=True) as c:
        rebuild_to_target(c, "r", m=8, ef_construction=32)
    assert _reloptions(conn, name) == ["m=8", "ef_construction=32"]
    assert conn.execute("SELECT to_regclass(%s)", (f"pgvision.{name}_rebuild",)).fetchone() == (None,)


def test_db_index_rebuild_to_target_command(database_url, conn):
    """500 rows: below the default target's 10,000 rows, so no ef_search is chosen."""
    from click.testing import CliRunner

    from pgvision.cli import main

    add_images(conn, "r", _vectors(500, 8))
    runner = CliRunner()
    args = [
        "db",
        "index",
        "r",
        "--rebuild-to-target",
        "-q",
        "--database-url",
        database_url,
    ]
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    assert out.output.startswith(
        "image_embeddings_model_1_hnsw: rebuilt with m 16, ef_construction 64 "
        "(500 rows < 250,000: m 16, ef_construction 64; graph 0.0 GB <= 25% of "
    )
    assert "500 rows, " in out.output and "while the old index served searches" in out.output
    out = runner.invoke(main, [*args, "--quantization", "binary"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith(
        "image_embeddings_model_1_hnsw: rebuilt with m 16, ef_construction 64, binary (as given)"
    )
    # a binary model stays binary when the rule chooses the rest
    out = runner.invoke(main, args)
    assert out.exit_code == 0, out.output
    assert ", binary (500 rows < 250,000: m 16, ef_construction 64; graph 0.0 GB <= 25% of " in out.output
    assert "binary kept); 500 rows" in out.output
    out = runner.invoke(main, [*args, "--m", "40", "--ef-construction", "64"])
    assert out.exit_code == 1
    assert (
        out.output == "Error: ef_construction must be at least 2 x m = 80, got 64: pass --ef-construction 80 or more\n"
    )


def test_binary_models_climb_their_own_ladder(conn):
    """A binary model's first rung is ef_search 12 (120 re-ranked candidates); full precision starts at 40."""
    from pgvision.index import ddl, recall_target

    add_images(conn, "b", _vectors(300, 16), metric="cosine")
    ddl.set_index(conn, "b", quantization="binary")
    choice = recall_target.choose_setting(conn, "b", 0.5)
    assert [v for v, _ in choice.tried][:1] == [12]
    ddl.set_index(conn, "b", quantization="none")
    choice = recall_target.choose_setting(conn, "b", 0.5)
    assert [v for v, _ in choice.tried][:1] == [40]


def test_rebuild_to_halfvec_switches_the_search_statements_in_the_swap(conn):
    """The new index is on embedding::halfvec(8); the model's row, view and search statements follow it."""
    from pgvision.index import ddl
    from pgvision.index.rebuild import rebuild_to_target

    add_images(conn, "h", _vectors(500, 8))
    model_id = conn.execute("SELECT model_id FROM pgvision.models WHERE name = 'h'").fetchone()[0]
    name = ddl.ensure_index(conn, model_id)
    q = "[1,0,0,0,0,0,0,0]"
    exact = ids(conn, "SELECT image_id FROM pgvision.image_embeddings ORDER BY embedding <-> %s LIMIT 5", q)
    rebuild_to_target(conn, "h", quantization="halfvec")
    assert (
        "(embedding)::halfvec(8)"
        in conn.execute("SELECT pg_get_indexdef(%s::regclass)", (f"pgvision.{name}",)).fetchone()[0]
    )
    assert conn.execute("SELECT quantization, index_shape FROM pgvision.models").fetchone() == ("halfvec", "manual")
    assert "halfvec(8)" in conn.execute("SELECT prosrc FROM pg_proc WHERE proname = 'search_images'").fetchone()[0]
    assert ids(conn, "SELECT image_id FROM pgvision.search_images(%s, 5)", q) == exact


def test_a_missed_target_prints_the_rebuild_to_run():
    from pgvision.index.recall_target import Choice, describe

    missed = Choice("photos", "ef_search", 1000, 0.947, 0.95, False, 1_000_000, [(40, 0.762), (1000, 0.947)])
    assert describe(missed) == (
        "photos: recall@10 0.947 at ef_search 1000, below the target 0.95 on 1,000,000 rows (tried 40: 0.762, "
        "1000: 0.947); rebuild the index denser, beside the old one: pgvision db index photos --rebuild-to-target "
        "(or --m 32 --ef-construction 128; IVFFlat: more --lists)"
    )
