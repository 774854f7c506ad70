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
        conn.execute(
            f"SELECT * FROM pgvision.search_images('[1,0,0]', 5, max_distance => {value})"
        )
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
        "SELECT image_id, round(distance::numeric, 4)::float8 FROM pgvision.search_images(%s, 1, "
        "ef_search => 1000)",
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


def test_migration_0016_round_trip_with_data(database_url):
    """Downgrade to 0015 gives back the 6-argument search_images (no max_distance); upgrade returns it."""
    from pgvision.server.connection import connect

    with connect(database_url, autocommit=True) as c:
        got = add_images(c, "tiny", ROWS)
    migrate.downgrade(database_url, "0015")
    with connect(database_url, autocommit=True) as c:
        assert ids(c, "SELECT image_id FROM pgvision.search_images('[1,0,0]', 2)") == [
            got["a"],
            got["b"],
        ]
        with pytest.raises(psycopg.errors.UndefinedFunction):
            c.execute(
                "SELECT * FROM pgvision.search_images('[1,0,0]', 2, max_distance => 0.1)"
            )
        assert (
            "Fails (SQLSTATE): 22004"
            in c.execute(
                "SELECT obj_description('pgvision.search_images'::regproc, 'pg_proc')"
            ).fetchone()[0]
        )
    migrate.upgrade(database_url)
    with connect(database_url, autocommit=True) as c:
        assert ids(
            c,
            "SELECT image_id FROM pgvision.search_images('[1,0,0]', 5, max_distance => 0.1)",
        ) == [got["a"]]
        assert c.execute(
            "SELECT has_function_privilege('pgvision_reader', 'pgvision.search_images'::regproc, "
            "'EXECUTE')"
        ).fetchone() == (True,)
