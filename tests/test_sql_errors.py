"""Every SQLSTATE a public SQL function raises is in the list its COMMENT gives.

Each error is provoked on a real server; the codes seen for a function must be exactly the
codes its ``COMMENT ON FUNCTION`` lists after ``Fails`` (what BI tools and ``\\df+`` show),
so a code the body raises cannot be missing from the documentation, nor one documented that
it never raises.
"""

from __future__ import annotations

import re

import psycopg
import pytest

from pgvision.registry import ModelSpec, register_model
from sqlhelpers import add_gallery, add_images, families

#: Before any model is registered.
EMPTY = [
    ("search_images", "SELECT * FROM pgvision.search_images('[1,0,0]', 3)", "55000"),
    ("similar_images", "SELECT * FROM pgvision.similar_images(1, 3)", "55000"),
    ("identify", "SELECT * FROM pgvision.identify('[1,0,0]')", "55000"),
    ("identify_face", "SELECT * FROM pgvision.identify_face(1)", "55000"),
]

Q8 = "'[1,0,0,0,0,0,0,0]'"

#: With an image model 'img' (3-d), a face model 'faces' (8-d, threshold 0.6) and a face
#: model 'nothresh' (8-d, no threshold); {image} and {face} are stored ids.
LOADED = [
    ("search_images", "SELECT * FROM pgvision.search_images(NULL, 3, 'img')", "22004"),
    ("search_images", "SELECT * FROM pgvision.search_images('[1,0,0]', NULL, 'img')", "22004"),
    ("search_images", "SELECT * FROM pgvision.search_images('[1,0,0]', 0, 'img')", "22023"),
    ("search_images", "SELECT * FROM pgvision.search_images('[1,0,0]', 3, 'img', ef_search => 0)", "22023"),
    ("search_images", "SELECT * FROM pgvision.search_images('[1,0]', 3, 'img')", "22023"),
    ("search_images", "SELECT * FROM pgvision.search_images('[1,0,0]', 3, 'faces')", "22023"),
    ("search_images", "SELECT * FROM pgvision.search_images('[1,0,0]', 3, 'nope')", "42704"),
    ("similar_images", "SELECT * FROM pgvision.similar_images(NULL, 3, 'img')", "22004"),
    ("similar_images", "SELECT * FROM pgvision.similar_images({image}, NULL, 'img')", "22004"),
    ("similar_images", "SELECT * FROM pgvision.similar_images({image}, 0, 'img')", "22023"),
    ("similar_images", "SELECT * FROM pgvision.similar_images({image}, 3, 'img', ef_search => 1001)", "22023"),
    ("similar_images", "SELECT * FROM pgvision.similar_images({image}, 3, 'faces')", "22023"),
    ("similar_images", "SELECT * FROM pgvision.similar_images(999999, 3, 'img')", "P0002"),
    ("similar_images", "SELECT * FROM pgvision.similar_images({image}, 3, 'nope')", "42704"),
    ("identify", "SELECT * FROM pgvision.identify(NULL, 'faces')", "22004"),
    ("identify", f"SELECT * FROM pgvision.identify({Q8}, 'faces', candidates => NULL)", "22004"),
    ("identify", f"SELECT * FROM pgvision.identify({Q8}, 'faces', candidates => 0)", "22023"),
    ("identify", f"SELECT * FROM pgvision.identify({Q8}, 'faces', ef_search => 0)", "22023"),
    ("identify", f"SELECT * FROM pgvision.identify({Q8}, 'faces', threshold => 'NaN')", "22023"),
    ("identify", f"SELECT * FROM pgvision.identify({Q8}, 'faces', min_margin => -1)", "22023"),
    ("identify", "SELECT * FROM pgvision.identify('[1,0,0]', 'faces')", "22023"),
    ("identify", "SELECT * FROM pgvision.identify('[1,0,0]', 'img')", "22023"),
    ("identify", f"SELECT * FROM pgvision.identify({Q8}, 'nope')", "42704"),
    ("identify", f"SELECT * FROM pgvision.identify({Q8}, 'nothresh')", "55000"),
    ("identify_face", "SELECT * FROM pgvision.identify_face(NULL, 'faces')", "22004"),
    ("identify_face", "SELECT * FROM pgvision.identify_face({face}, 'faces', candidates => NULL)", "22004"),
    ("identify_face", "SELECT * FROM pgvision.identify_face({face}, 'faces', candidates => 0)", "22023"),
    ("identify_face", "SELECT * FROM pgvision.identify_face({face}, 'faces', ef_search => 0)", "22023"),
    ("identify_face", "SELECT * FROM pgvision.identify_face({face}, 'faces', threshold => -1)", "22023"),
    ("identify_face", "SELECT * FROM pgvision.identify_face({face}, 'img')", "22023"),
    ("identify_face", "SELECT * FROM pgvision.identify_face(999999, 'faces')", "P0002"),
    ("identify_face", "SELECT * FROM pgvision.identify_face({face}, 'nope')", "42704"),
    ("identify_face", "SELECT * FROM pgvision.identify_face({face}, 'nothresh')", "P0002"),
    ("recall_at_k", "SELECT * FROM pgvision.recall_at_k(NULL)", "22004"),
    ("recall_at_k", "SELECT * FROM pgvision.recall_at_k('img', 0)", "22023"),
    ("recall_at_k", "SELECT * FROM pgvision.recall_at_k('img', NULL)", "22023"),
    ("recall_at_k", "SELECT * FROM pgvision.recall_at_k('img', 10, 0)", "22023"),
    ("recall_at_k", "SELECT * FROM pgvision.recall_at_k('img', 10, 10, 0)", "22023"),
    ("recall_at_k", "SELECT * FROM pgvision.recall_at_k('nope')", "42704"),
    ("recall_at_k", "SELECT * FROM pgvision.recall_at_k('one')", "55000"),
]


def sqlstate(conn, query: str) -> str:
    with pytest.raises(psycopg.Error) as info:
        conn.execute(query)
    return info.value.sqlstate


def documented(conn, function: str) -> set[str]:
    comment = conn.execute(
        "SELECT obj_description(p.oid, 'pg_proc') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = 'pgvision' AND p.proname = %s", (function,)).fetchone()[0]
    fails = re.search(r"Fails[^:]*: (.*)$", comment or "")
    assert fails, (function, comment)
    return set(re.findall(r"\b(?:[0-9]{2}[0-9A-Z]{3}|P[0-9]{4})\b", fails.group(1)))


def test_every_sqlstate_raised_is_the_list_in_the_functions_comment(conn):
    seen: dict[str, set[str]] = {}
    for function, query, state in EMPTY:
        assert sqlstate(conn, query) == state, query
        seen.setdefault(function, set()).add(state)
    ids = add_images(conn, "img", [("a", "cat", [1, 0, 0]), ("b", "dog", [0, 1, 0])])
    add_images(conn, "one", [("c", "cow", [0, 0, 1])])
    photos, who, _ = families(2, 8, seed=1, max_photos=3)
    add_gallery(conn, "faces", photos, who)
    register_model(conn, ModelSpec("nothresh", "face", 8, "l2"))
    face = conn.execute("SELECT min(face_id) FROM pgvision.face_embeddings").fetchone()[0]
    for function, query, state in LOADED:
        query = query.format(image=ids["a"], face=face)
        assert sqlstate(conn, query) == state, query
        seen.setdefault(function, set()).add(state)
    assert set(seen) == {"search_images", "similar_images", "identify", "identify_face", "recall_at_k"}
    assert {f: documented(conn, f) for f in seen} == seen


def test_the_comments_list_reads_as_written(conn):
    comment = conn.execute(
        "SELECT obj_description('pgvision.similar_images(bigint, integer, text, text, integer, text)'"
        "::regprocedure, 'pg_proc')"
    ).fetchone()[0]
    assert comment.endswith(
        "Args: image_id, k 1..1000 (10), model (default image model), label filter, ef_search, "
        "collection (NULL = every collection you may see). "
        "Fails (SQLSTATE): 22004 NULL image_id or k; 22023 k or ef_search outside 1..1000, a "
        "face model named, or several image models and none the default; P0002 no such image, or no embedding of that "
        "model for it; 42704 unknown model, or a collection that does not exist or is not granted to you; 55000 no "
        "image model loaded yet."
    )


def test_downgrade_gives_the_comments_back_as_they_were(database_url):
    from pgvision import migrate
    from pgvision.server.connection import connect

    query = ("SELECT p.proname, obj_description(p.oid, 'pg_proc') FROM pg_proc p "
             "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'pgvision' "
             "AND p.proname IN ('search_images', 'similar_images', 'identify', 'identify_face', 'recall_at_k') "
             "ORDER BY 1")
    migrate.downgrade(database_url, "0012")
    with connect(database_url, autocommit=True) as c:
        before = c.execute(query).fetchall()
    assert not any("Fails (SQLSTATE)" in text for _, text in before)
    migrate.upgrade(database_url)
    with connect(database_url, autocommit=True) as c:
        assert all("Fails" in text for _, text in c.execute(query).fetchall())
    migrate.downgrade(database_url, "0012")
    with connect(database_url, autocommit=True) as c:
        assert c.execute(query).fetchall() == before
