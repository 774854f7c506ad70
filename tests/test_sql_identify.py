"""identify / identify_face on a hand-checkable 2-d gallery (L2 distance).

Gallery: ann has faces at [1, 0] and [0.9, 0.1]; bob at [0, 1]; an unenrolled face at
[0.95, 0] belongs to nobody. Threshold 0.5 (distance), min_margin 0.
"""

from __future__ import annotations

import math

import psycopg
import pytest

from pgvision.registry import ModelSpec, register_model
from sqlhelpers import TWO_PEOPLE, add_enrolled_faces


@pytest.fixture
def gallery(conn):
    return add_enrolled_faces(conn, "face2d", TWO_PEOPLE)


def identify(conn, sql, *args):
    return [(r[0], r[1], round(r[2], 4), None if r[4] is None else round(r[4], 4), r[5])
            for r in conn.execute(sql, args).fetchall()]


def test_identify_matches_the_nearest_identity(conn, gallery):
    people, _ = gallery
    rows = identify(conn, "SELECT * FROM pgvision.identify('[1,0.05]')")
    d_ann = round(0.05, 4)                       # to [1, 0]
    d_bob = round(math.hypot(1, 0.95), 4)        # to [0, 1]
    assert rows == [(people["ann"], "ann", d_ann, round(d_bob - d_ann, 4), True),
                    (people["bob"], "bob", d_bob, None, False)]


def test_far_probe_is_unknown(conn, gallery):
    rows = identify(conn, "SELECT * FROM pgvision.identify('[0.5,0.5]')")
    assert [r[1] for r in rows] == ["ann", "bob"]
    assert not any(r[4] for r in rows)          # nearest ann face at 0.566 > 0.5


def test_threshold_argument_overrides_the_models(conn, gallery):
    rows = identify(conn, "SELECT * FROM pgvision.identify('[0.5,0.5]', threshold => 0.6)")
    assert [r[4] for r in rows] == [True, False]


def test_small_margin_is_unknown(conn, gallery):
    # [0.45, 0.55]: ann (0.9,0.1) at 0.6364, bob (0,1) at 0.6364 + tiny: margin ~0
    rows = identify(conn, "SELECT * FROM pgvision.identify('[0.45,0.55]', threshold => 1.0, min_margin => 0.1)")
    assert not any(r[4] for r in rows)
    rows = identify(conn, "SELECT * FROM pgvision.identify('[0.45,0.55]', threshold => 1.0)")
    assert rows[0][4] is True


def test_unenrolled_faces_are_not_candidates(conn, gallery):
    people, _ = gallery
    rows = identify(conn, "SELECT * FROM pgvision.identify('[0.95,0]', candidates => 5)")
    assert [r[0] for r in rows] == [people["ann"], people["bob"]]


def test_identify_face_excludes_the_face_itself(conn, gallery):
    people, faces = gallery
    rows = identify(conn, "SELECT * FROM pgvision.identify_face(%s)", faces["ann1"])
    assert rows[0][:3] == (people["ann"], "ann", round(math.hypot(0.1, 0.1), 4))   # ann2, not itself
    assert rows[0][4] is True


def test_candidates_limits_rows(conn, gallery):
    assert len(conn.execute("SELECT * FROM pgvision.identify('[1,0]', candidates => 1)").fetchall()) == 1


def test_empty_gallery_returns_no_rows(conn):
    register_model(conn, ModelSpec("face2d", "face", 2, "l2", threshold=0.5))
    assert conn.execute("SELECT * FROM pgvision.identify('[1,0]')").fetchall() == []


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            "identify('[1,0,0]')",
            psycopg.errors.InvalidParameterValue,
            "model 'face2d' gives 2-d vectors but the query has 3: pass a 2-d query, or the model that made it",
        ),
        (
            "identify(NULL)",
            psycopg.errors.NullValueNotAllowed,
            "query must not be NULL: pass a 2-d embedding from model 'face2d'",
        ),
        (
            "identify('[1,0]', candidates => 0)",
            psycopg.errors.InvalidParameterValue,
            "k must be between 1 and 1000, got 0",
        ),
        (
            "identify('[1,0]', 'nope')",
            psycopg.errors.UndefinedObject,
            "unknown model 'nope': the face models are 'face2d'",
        ),
        ("identify_face(424242)", psycopg.errors.NoDataFound, "no face with face_id 424242"),
    ],
)
def test_identify_errors(conn, gallery, call, error, message):
    with pytest.raises(error) as err:
        conn.execute(f"SELECT * FROM pgvision.{call}")
    assert err.value.diag.message_primary == message


def test_model_without_threshold(conn):
    register_model(conn, ModelSpec("raw", "face", 2, "l2"))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState) as err:
        conn.execute("SELECT * FROM pgvision.identify('[1,0]')")
    assert err.value.diag.message_primary == (
        "model 'raw' has no identity threshold: pass threshold => a distance, or run pgvision calibrate --model raw")


def test_gallery_view(conn, gallery):
    assert sorted(conn.execute("SELECT name, faces, images FROM pgvision.gallery").fetchall()) == [
        ("ann", 2, 2), ("bob", 1, 1)]
