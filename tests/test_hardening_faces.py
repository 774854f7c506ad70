"""identify before any calibrate says so in one line; calibrate never stores a degenerate result.

Hand-made galleries (model ``line2d``: 2-d, L2, points on the x axis; distances are
differences of x), as tests/test_calibrate_openset.py.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pgvision.cli.faces import uncalibrated_note
from pgvision.faces.calibrate import CalibrationError, calibrate, store_calibration
from pgvision.ingest.pg_copy import copy_vectors
from pgvision.registry import ModelSpec, get_model, register_model


def _gallery(conn, points):
    """points: (face key, identity name, x)."""
    model_id = register_model(conn, ModelSpec("line2d", "face", 2, "l2", threshold=0.6))
    people = {}
    for key, who, x in points:
        if who not in people:
            people[who] = conn.execute(
                "INSERT INTO pgvision.identities (name) VALUES (%s) RETURNING identity_id", (who,)
            ).fetchone()[0]
        image_id = conn.execute(
            "INSERT INTO pgvision.images (sha256, uri) VALUES (%s, %s) RETURNING image_id",
            (hashlib.sha256(key.encode()).digest(), f"file:///{key}.jpg"),
        ).fetchone()[0]
        face_id = conn.execute(
            "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, identity_id) "
            "VALUES (%s, 'test', 0, 0, 10, 10, %s) RETURNING face_id",
            (image_id, people[who]),
        ).fetchone()[0]
        copy_vectors(
            conn, "face_embeddings", "face_id", model_id, np.array([face_id]), np.array([[x, 0.0]], np.float32)
        )


#: ann: x = 0, 0.2; bob: 1, 1.4; cat: 3, 3.2 (every genuine search finds its identity first).
LINE = [
    ("ann1", "ann", 0.0),
    ("ann2", "ann", 0.2),
    ("bob1", "bob", 1.0),
    ("bob2", "bob", 1.4),
    ("cat1", "cat", 3.0),
    ("cat2", "cat", 3.2),
]


def test_identify_on_a_gallery_never_calibrated_says_so_once(conn):
    _gallery(conn, LINE)
    assert uncalibrated_note(conn, "line2d") == (
        "model line2d was never calibrated on this gallery: its threshold 0.6000 was not measured on your people, "
        "and a larger gallery accepts more strangers at the same threshold (docs/faces.md); run pgvision calibrate "
        "once people are enrolled"
    )
    store_calibration(conn, calibrate(conn, "line2d", target_fpir=0.2, method="empirical"))
    assert uncalibrated_note(conn, "line2d") is None


def test_a_degenerate_calibration_is_refused_and_the_good_threshold_kept(conn):
    """The same two photos (x = 0 and 0.01) enrolled under three names: each face's twin under
    another name is nearer (0) than its own identity's other photo (0.01), so no genuine
    search finds its own identity first."""
    _gallery(conn, [(f"{who}{i}", who, x) for who in ("ann", "bob", "cat") for i, x in ((1, 0.0), (2, 0.01))])
    conn.execute("UPDATE pgvision.models SET threshold = 0.45 WHERE name = 'line2d'")  # a good one, kept
    cal = calibrate(conn, "line2d", target_fpir=0.2, method="empirical")
    assert cal.expected_tpir == 0 and cal.open_set.genuine_correct.tolist() == [False] * 6
    with pytest.raises(CalibrationError) as err:
        store_calibration(conn, cal)
    assert str(err.value) == (
        "calibration of 'line2d' not stored: no gallery face finds its own identity first (0 of 6 genuine searches), "
        "so identify would recognise nobody at any threshold; the model keeps its threshold 0.4500. Check the gallery "
        "(the same face enrolled under several names?) and rerun; --dry-run prints the table"
    )
    assert get_model(conn, "line2d")["threshold"] == pytest.approx(0.45)
    assert conn.execute("SELECT count(*) FROM pgvision.calibrations").fetchone() == (0,)
