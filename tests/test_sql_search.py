"""search_images / similar_images on tiny vectors whose order you can check by hand.

The model 'tiny' is 3-d with L2 distance; the query [1, 0, 0] is at distance
a: 0, b: sqrt(0.02) = 0.1414, e: sqrt(0.5) = 0.7071, c and d: sqrt(2) = 1.4142.
"""

from __future__ import annotations

import math

import psycopg
import pytest

from sqlhelpers import TINY_ROWS, add_images

pytestmark = pytest.mark.core  # the SQL API of the core install: .ci/run runs it without the extras too


@pytest.fixture
def tiny(conn):
    return add_images(conn, "tiny", TINY_ROWS)


def search(conn, sql, *args):
    return conn.execute(sql, args).fetchall()


def test_search_images_returns_nearest_first_with_exact_rows(conn, tiny):
    rows = search(conn, "SELECT * FROM pgvision.search_images('[1,0,0]', 3)")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (tiny["a"], "file:///a.jpg", "cat"),
        (tiny["b"], "file:///b.jpg", "cat"),
        (tiny["e"], "file:///e.jpg", "bird"),
    ]
    assert [round(r[3], 4) for r in rows] == [0.0, 0.1414, 0.7071]
    assert [round(r[4], 4) for r in rows] == [
        1.0,
        round(1 / (1 + math.sqrt(0.02)), 4),
        round(1 / (1 + math.sqrt(0.5)), 4),
    ]


def test_ties_are_broken_by_image_id(conn, tiny):
    rows = search(conn, "SELECT image_id FROM pgvision.search_images('[1,0,0]', 5)")
    assert [r[0] for r in rows] == [tiny["a"], tiny["b"], tiny["e"], tiny["c"], tiny["d"]]


def test_label_filter(conn, tiny):
    rows = search(conn, "SELECT image_id, label FROM pgvision.search_images('[1,0,0]', 10, label => 'dog')")
    assert rows == [(tiny["c"], "dog"), (tiny["d"], "dog")]


def test_metadata_filter(conn, tiny):
    rows = search(
        conn, """SELECT image_id FROM pgvision.search_images('[1,0,0]', 10, filter => '{"camera": "x100"}')"""
    )
    assert [r[0] for r in rows] == [tiny["a"], tiny["c"]]


def test_similar_images_excludes_the_probe(conn, tiny):
    rows = search(
        conn, "SELECT image_id, round(distance::numeric, 4)::float8 FROM pgvision.similar_images(%s, 2)", tiny["a"]
    )
    assert rows == [(tiny["b"], pytest.approx(0.1414)), (tiny["e"], pytest.approx(0.7071))]


def test_similar_images_with_label(conn, tiny):
    rows = search(conn, "SELECT image_id FROM pgvision.similar_images(%s, 5, label => 'cat')", tiny["a"])
    assert rows == [(tiny["b"],)]


def test_cosine_model_distance_and_similarity(conn):
    ids = add_images(conn, "tiny-cos", [("p", None, [1.0, 0.0]), ("q", None, [0.0, 1.0]), ("r", None, [-1.0, 0.0])],
                     metric="cosine")
    rows = search(conn, "SELECT image_id, distance, similarity FROM pgvision.search_images('[2,0]', 3, 'tiny-cos')")
    assert [(r[0], round(r[1], 6), round(r[2], 6)) for r in rows] == [
        (ids["p"], 0.0, 1.0), (ids["q"], 1.0, 0.0), (ids["r"], 2.0, -1.0)]


def test_no_rows_when_model_has_no_embeddings(conn):
    from pgvision.registry import ModelSpec, register_model

    register_model(conn, ModelSpec("empty", "image", 3, "l2"))
    assert search(conn, "SELECT * FROM pgvision.search_images('[1,0,0]', 5)") == []


def test_default_model_is_the_first_image_model(conn, tiny):
    add_images(conn, "second", [("z", None, [1.0, 1.0])])
    # default remains 'tiny' (3-d): a 2-d query names the right fix
    with pytest.raises(psycopg.errors.InvalidParameterValue) as err:
        conn.execute("SELECT * FROM pgvision.search_images('[1,1]')")
    assert "model 'tiny' gives 3-d vectors but the query has 2" in str(err.value)
    assert len(search(conn, "SELECT * FROM pgvision.search_images('[1,1]', 5, 'second')")) == 1


@pytest.mark.parametrize(
    "call, error, message",
    [
        ("search_images('[1,0,0]', 0)", psycopg.errors.InvalidParameterValue, "k must be between 1 and 1000, got 0"),
        (
            "search_images('[1,0,0]', 1001)",
            psycopg.errors.InvalidParameterValue,
            "k must be between 1 and 1000, got 1001",
        ),
        (
            "search_images('[1,0,0]', NULL)",
            psycopg.errors.NullValueNotAllowed,
            "k must not be NULL: pass a number of rows between 1 and 1000",
        ),
        (
            "search_images(NULL, 5)",
            psycopg.errors.NullValueNotAllowed,
            "query must not be NULL: pass a 3-d embedding from model 'tiny'",
        ),
        (
            "search_images('[1,0]', 5)",
            psycopg.errors.InvalidParameterValue,
            "model 'tiny' gives 3-d vectors but the query has 2: pass a 3-d query, or the model that made it",
        ),
        (
            "search_images('[1,0,0]', 5, 'nope')",
            psycopg.errors.UndefinedObject,
            "unknown model 'nope': the image models are 'tiny'",
        ),
        (
            "search_images('[1,0,0]', 5, ef_search => 0)",
            psycopg.errors.InvalidParameterValue,
            "ef_search must be between 1 and 1000, got 0",
        ),
        ("similar_images(999999, 5)", psycopg.errors.NoDataFound, "no image with image_id 999999"),
        (
            "similar_images(NULL, 5)",
            psycopg.errors.NullValueNotAllowed,
            "image_id must not be NULL: pass an image_id from pgvision.images",
        ),
    ],
)
def test_bad_arguments_raise_errcode_and_exact_text(conn, tiny, call, error, message):
    with pytest.raises(error) as err:
        conn.execute(f"SELECT * FROM pgvision.{call}")
    assert err.value.diag.message_primary == message


def test_no_image_model_loaded_yet(conn):
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        conn.execute("SELECT * FROM pgvision.search_images('[1,0,0]')")
    assert err.value.diag.message_primary == "no image model is loaded yet"
    assert err.value.diag.message_hint == "load images first: pgvision load PATH"


def test_image_without_embedding_of_that_model(conn, tiny):
    add_images(conn, "other", [("zz", None, [1.0, 1.0])])
    with pytest.raises(psycopg.errors.NoDataFound) as err:
        conn.execute("SELECT * FROM pgvision.similar_images(%s, 5, 'other')", (tiny["a"],))
    assert (
        err.value.diag.message_primary
        == f"image {tiny['a']} has no 'other' embedding: load it with pgvision load --model other"
    )


def test_settings_are_restored_after_a_search(conn, tiny):
    conn.execute("SET hnsw.ef_search = 77")
    with conn.transaction():
        search(conn, "SELECT * FROM pgvision.search_images('[1,0,0]', 3, label => 'cat', ef_search => 200)")
        assert conn.execute("SHOW hnsw.ef_search").fetchone()[0] == "77"
        assert conn.execute("SHOW hnsw.iterative_scan").fetchone()[0] == "off"


def test_views(conn, tiny):
    assert sorted(search(conn, "SELECT label, images FROM pgvision.labels")) == [("bird", 1), ("cat", 2), ("dog", 2)]
    row = conn.execute(
        "SELECT model, kind, dims, metric, embeddings, index_name FROM pgvision.model_stats").fetchone()
    assert row == ("tiny", "image", 3, "l2", 5, None)
