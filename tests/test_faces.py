"""Faces on a fresh machine: real photos committed to the repository, a real PostgreSQL.

The photos are the loader's public-domain / CC0 fixtures (tests/fixtures/photos/SOURCES.md):
``astronaut_eileen_collins.jpg`` (NASA, public domain; one face) and three photos without a
face. Photos with several faces, grayscale and too-small faces are derived from them here.
The decision rule (SQL ``identify`` v2) is checked on 2-d vectors whose distances can be
worked out by hand, and against its numpy twin (:mod:`pgvision.faces.decide`).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import psycopg
import pytest

pytest.importorskip("PIL", reason="Pillow is not installed: these tests need pip install 'pgvision[images]'")

from click.testing import CliRunner
from PIL import Image

from pgvision.cli import main
from pgvision.faces.calibrate import (
    CalibrationError,
    calibrate,
    rates,
    threshold_at_far,
)
from pgvision.faces.decide import assign_identities, identity_distances, rank_identities
from pgvision.ingest.pg_copy import copy_vectors
from pgvision.registry import ModelSpec, register_model
from sqlhelpers import add_enrolled_faces

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
ASTRONAUT = PHOTOS / "astronaut_eileen_collins.jpg"
NON_FACES = ["chelsea_cat.jpg", "coffee_cup.jpg", "falcon9_rocket.jpg"]


@pytest.fixture(scope="module")
def detector():
    from pgvision.faces.detect import FaceDetector

    return FaceDetector("hog", upsample=1)


@pytest.fixture(scope="module")
def dlib_pipeline(detector):
    from pgvision.faces.embed import load_face_model
    from pgvision.faces.pipeline import FacePipeline

    return FacePipeline(load_face_model("dlib"), detector)


def rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def two_astronauts(tmp_path: Path) -> Path:
    """The astronaut beside her mirror image: two faces of one person in one photo."""
    a = rgb(ASTRONAUT)
    path = tmp_path / "two_astronauts.jpg"
    Image.fromarray(np.concatenate([a, a[:, ::-1]], axis=1)).save(path, quality=90)
    return path


# --- detection and alignment -------------------------------------------------------------


def test_detects_one_face_with_landmarks_inside_its_box(detector):
    found = detector.detect(rgb(ASTRONAUT))
    assert len(found.faces) == 1 and found.too_small == []
    face = found.faces[0]
    left, top, right, bottom = face.box
    assert 40 <= right - left <= 120 and face.score > 0
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    assert ((face.landmarks[:, 0] >= left) & (face.landmarks[:, 0] <= right)).all()
    assert ((face.landmarks[:, 1] >= top) & (face.landmarks[:, 1] <= bottom + 10)).all()


def test_cnn_detector_on_request():
    from pgvision.faces.detect import FaceDetector

    found = FaceDetector("cnn", upsample=1).detect(rgb(ASTRONAUT))
    assert [f.detector for f in found.faces] == ["cnn"]
    assert 40 <= found.faces[0].size <= 120 and found.faces[0].score > 0


@pytest.mark.parametrize("name", NON_FACES)
def test_photos_without_a_face(detector, name):
    found = detector.detect(rgb(PHOTOS / name))
    assert found.faces == [] and found.too_small == []


def test_grayscale_photo(detector, tmp_path):
    from pgvision.faces.pipeline import read_photo

    gray = tmp_path / "gray.png"
    Image.open(ASTRONAUT).convert("L").save(gray)
    photo = read_photo(gray)
    assert photo.pixels.shape == (320, 320, 3)
    assert len(detector.detect(photo.pixels).faces) == 1


def test_face_too_small_to_align():
    from pgvision.faces.detect import FaceDetector

    small = np.asarray(Image.open(ASTRONAUT).convert("RGB").resize((160, 160), Image.LANCZOS))
    found = FaceDetector("hog", upsample=2).detect(small)   # found at 2x2 upsampling, 33 px wide
    assert found.faces == [] and [f.size for f in found.too_small] == [33]


def test_several_faces_largest_first(detector, tmp_path):
    found = detector.detect(rgb(two_astronauts(tmp_path)))
    assert len(found.faces) == 2
    assert found.faces[0].size >= found.faces[1].size


def test_chips_have_the_models_input_size(detector):
    from pgvision.faces.align import align_faces

    pixels = rgb(ASTRONAUT)
    faces = detector.detect(pixels).faces
    assert align_faces(pixels, faces, 150, 0.25).shape == (1, 150, 150, 3)
    assert align_faces(pixels, faces, 160, 0.3).dtype == np.uint8
    assert align_faces(pixels, [], 160, 0.3).shape == (0, 160, 160, 3)
    with pytest.raises(ValueError, match="chip size must be at least 32 px, got 8"):
        align_faces(pixels, faces, 8, 0.25)


def test_bad_detector_and_model_names():
    from pgvision.faces.detect import FaceDetector
    from pgvision.faces.embed import load_face_model

    with pytest.raises(ValueError, match="detector must be one of hog, cnn, got 'mtcnn'"):
        FaceDetector("mtcnn")
    with pytest.raises(ValueError, match="face model must be one of dlib, facenet, got 'arcface'"):
        load_face_model("arcface")
    with pytest.raises(ValueError, match="model facenet needs its weights; pass --weights FILE"):
        load_face_model("facenet")


def test_dlib_descriptor_of_a_mirrored_face_is_close(dlib_pipeline, tmp_path):
    faces, emb = dlib_pipeline.embed_photo(rgb(two_astronauts(tmp_path)))
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    assert np.linalg.norm(emb[0] - emb[1]) < 0.4        # same person, mirrored: well under dlib's 0.6


def test_facenet_weights_load_strictly_and_give_unit_vectors(tmp_path):
    from pgvision.faces.detect import FaceDetector
    from pgvision.faces.embed import load_face_model
    from pgvision.faces.pipeline import FacePipeline

    weights = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / \
        "facenet_inception_resnet_v1_casia_webface_20180408-102900.pt"
    if not weights.exists():
        pytest.skip(f"{weights} is absent: the FaceNet test needs the shared weights beside the repository")
    pipeline = FacePipeline(load_face_model("facenet", weights, "cpu"), FaceDetector())
    _, emb = pipeline.embed_photo(rgb(two_astronauts(tmp_path)))
    assert emb.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert float(emb[0] @ emb[1]) > 0.7                  # cosine similarity of the mirror pair
    bad = tmp_path / "not_weights.pt"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(ValueError, match="is not an InceptionResnetV1 state_dict in facenet-pytorch key names"):
        load_face_model("facenet", bad, "cpu")


# --- the decision rule, by hand ------------------------------------------------------------
#
# Gallery (L2): ann has two looks, [1, 0] and [0, 1] (mean [0.5, 0.5]); bob has [-1, 0] and
# [-0.8, 0] (mean [-0.9, 0]). Identity distance = min(nearest face, distance to the mean).

GALLERY = [("ann1", "ann", [1.0, 0.0]), ("ann2", "ann", [0.0, 1.0]),
           ("bob1", "bob", [-1.0, 0.0]), ("bob2", "bob", [-0.8, 0.0])]


@pytest.fixture
def gallery(conn):
    return add_enrolled_faces(conn, "face2d", GALLERY)


def sql_rows(conn, query, *args):
    return [(r[1], round(r[2], 4), None if r[4] is None else round(r[4], 4), r[5])
            for r in conn.execute(query, args).fetchall()]


def test_identity_distance_uses_the_gallery_mean(conn, gallery):
    # probe [0.5, 0.45]: ann's faces are 0.6727 away but her mean only 0.05;
    # bob: nearest face [-0.8, 0] at hypot(1.3, 0.45) = 1.3757, mean at 1.4705.
    rows = sql_rows(conn, "SELECT * FROM pgvision.identify('[0.5,0.45]')")
    assert rows == [("ann", 0.05, round(math.hypot(1.3, 0.45) - 0.05, 4), True),
                    ("bob", round(math.hypot(1.3, 0.45), 4), None, False)]


def test_identify_face_leaves_the_probe_out(conn, gallery):
    _, faces = gallery
    # ann1 [1, 0] against ann without ann1 (only [0, 1]): 1.4142; bob's nearest [-0.8, 0]: 1.8
    rows = sql_rows(conn, "SELECT * FROM pgvision.identify_face(%s, threshold => 2)", faces["ann1"])
    assert rows == [("ann", 1.4142, 0.3858, True), ("bob", 1.8, None, False)]


def test_sql_and_numpy_rules_agree(conn, gallery):
    vecs = np.array([v for _, _, v in GALLERY], np.float32)
    labels = np.array([0, 0, 1, 1])
    probes = np.array([[0.5, 0.45], [0.2, -0.3], [-0.3, 0.6], [0.9, 0.1]], np.float32)
    ids, dist = identity_distances(probes, vecs, labels, "l2")
    ranked = rank_identities(ids, dist)
    for p, best, d, m in zip(probes, ranked.best, ranked.distance, ranked.margin, strict=True):
        row = conn.execute("SELECT name, distance, margin FROM pgvision.identify(%s::vector) LIMIT 1",
                           (p,)).fetchone()
        assert row[0] == ("ann", "bob")[best]
        assert row[1] == pytest.approx(d, abs=1e-6) and row[2] == pytest.approx(m, abs=1e-6)
    # leave-one-out: the numpy twin of identify_face
    ids, dist = identity_distances(vecs, vecs, labels, "l2", probe_index=np.arange(4))
    np.testing.assert_allclose(dist[0], [math.sqrt(2), 1.8], atol=1e-6)


def test_min_margin_turns_a_close_call_into_unknown(conn, gallery):
    # probe [0, 0]: ann's mean [0.5, 0.5] at 0.7071, bob's [-0.8, 0] at 0.8: margin 0.0929
    assert sql_rows(conn, "SELECT * FROM pgvision.identify('[0,0]', threshold => 1)")[0][3] is True
    assert sql_rows(conn, "SELECT * FROM pgvision.identify('[0,0]', threshold => 1, min_margin => 0.1)")[0][3] is False


def test_calibration_on_hand_distances():
    impostor = np.array([0.3, 0.5, 0.7, 0.9])
    assert threshold_at_far(impostor, 0.2) < 0.3          # FAR 0.2 of 4 comparisons: accept none
    t = threshold_at_far(impostor, 0.5)                    # may accept 2: just under 0.7
    assert 0.5 <= t < 0.7 and np.float32(t) == t
    assert rates(np.array([0.1, 0.2, 0.8]), impostor, t) == (0.5, pytest.approx(1 / 3), pytest.approx(2 / 3))
    with pytest.raises(ValueError, match="target FAR must be between 0 and 1 \\(exclusive\\), got 0"):
        threshold_at_far(impostor, 0)
    # Gaussian fit: mean 0.6, sample standard deviation 0.2582; its 0.05 quantile
    assert threshold_at_far(impostor, 0.05, "normal") == pytest.approx(0.6 - 1.6449 * 0.25820, abs=1e-4)


def test_calibrate_refuses_a_gallery_too_small(conn):
    register_model(conn, ModelSpec("face2d", "face", 2, "l2", threshold=0.5))
    with pytest.raises(
        CalibrationError, match="model 'face2d' has 0 enrolled faces of 0 identities; calibration needs"
    ):
        calibrate(conn, "face2d")


def test_calibrate_stores_threshold_and_history(conn, gallery):
    from pgvision.faces.calibrate import store_calibration

    cal = calibrate(conn, "face2d", target_far=0.2, method="empirical")
    # genuine (leave-one-out): ann1 and ann2 1.4142 each, bob1 and bob2 0.2 each.
    # impostors: ann1-bob 1.8, ann2-bob hypot(0.8, 1) = 1.2806, bob1-ann 1.4142, bob2-ann 1.2806.
    # FAR 0.2 of 4 comparisons accepts none: the threshold sits just under 1.2806.
    assert (cal.genuine_pairs, cal.impostor_pairs) == (4, 4)
    assert math.hypot(0.8, 1) - 1e-6 < cal.threshold < math.hypot(0.8, 1)
    assert (cal.far, cal.frr, cal.tar) == (0.0, 0.5, 0.5)
    store_calibration(conn, cal)
    store_calibration(conn, cal)
    assert conn.execute("SELECT threshold FROM pgvision.models WHERE name = 'face2d'").fetchone()[0] == \
        pytest.approx(cal.threshold)
    assert conn.execute("SELECT count(*) FROM pgvision.calibrations").fetchone()[0] == 2


def test_assignment_never_gives_one_identity_to_two_faces():
    # two faces, both nearest to identity 0; face 1 fits it better, face 0 falls back to 1.
    costs = np.array([[0.30, 0.45], [0.20, np.inf]])
    ok = costs <= 0.5
    assert assign_identities(costs, ok, unknown_cost=0.5).tolist() == [1, 0]
    # nothing else acceptable for face 0: it stays unknown
    costs = np.array([[0.30, 0.70], [0.20, np.inf]])
    assert assign_identities(costs, costs <= 0.5, unknown_cost=0.5).tolist() == [-1, 0]
    assert assign_identities(np.zeros((0, 3)), np.zeros((0, 3), bool), 0.5).tolist() == []


# --- end to end, real photos, real server --------------------------------------------------


def test_faces_load_records_photos_without_a_face_and_is_idempotent(database_url, tmp_path):
    runner = CliRunner()
    args = ["faces", "load", str(PHOTOS), "--quiet", "--database-url", database_url]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "loaded 4 photos, 1 faces (1 new embeddings)" in result.output
    assert "skipped 3: 3 no-face" in result.output
    with psycopg.connect(database_url) as conn:
        scans = conn.execute("SELECT s.faces, i.uri FROM pgvision.face_scans s JOIN pgvision.images i USING (image_id) "
                             "ORDER BY i.uri").fetchall()
        assert [f for f, _ in scans] == [1, 0, 0, 0]
        landmarks, score = conn.execute("SELECT landmarks, detector_score FROM pgvision.faces").fetchone()
        assert len(landmarks) == 10 and score > 0
    again = runner.invoke(main, args)
    assert (
        again.exit_code == 0
        and "loaded 0 photos, 0 faces (0 new embeddings), enrolled 0, already done 4" in again.output
    )


def test_enroll_then_identify_two_faces_of_one_person(database_url, tmp_path):
    runner = CliRunner()
    db = ["--database-url", database_url]
    result = runner.invoke(main, ["enroll", "Eileen Collins", str(ASTRONAUT), "--quiet", *db])
    assert result.exit_code == 0, result.output
    assert "Eileen Collins: 1 gallery faces for model dlib" in result.output
    result = runner.invoke(main, ["identify", str(two_astronauts(tmp_path)), "--json", *db])
    assert result.exit_code == 0, result.output
    import json

    faces = [json.loads(line) for line in result.output.splitlines()]
    assert len(faces) == 2
    # both faces are Eileen Collins' (one mirrored), but she is given to one face only
    assert sorted(f["name"] or "" for f in faces) == ["", "Eileen Collins"]
    assert [f["reassigned"] for f in faces if f["name"] is None] == [True]
    quiet = runner.invoke(main, ["identify", str(two_astronauts(tmp_path)), "--quiet", *db])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.output.splitlines() == [f"face {f['face']}: {f['name'] or 'unknown'}" for f in faces]
    result = runner.invoke(main, ["identify", str(PHOTOS / "chelsea_cat.jpg"), *db])
    assert result.exit_code == 0 and "no face found" in result.output


def test_identify_errors_are_one_line(database_url, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["identify", str(ASTRONAUT), "--database-url", database_url])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: unknown model 'dlib': the registered models are none yet"
    result = runner.invoke(main, ["calibrate", "--model", "dlib", "--database-url", database_url])
    assert result.exit_code == 1 and result.output.startswith("Error: unknown model 'dlib'")
    result = runner.invoke(
        main, ["faces", "load", str(ASTRONAUT), "--model", "facenet", "--database-url", database_url]
    )
    assert result.exit_code == 1 and "model facenet needs its weights; pass --weights FILE" in result.output


def test_migration_0002_switches_the_rule_and_back(empty_database_url):
    from pgvision import migrate
    from pgvision.server.connection import connect

    url = empty_database_url
    migrate.upgrade(url)

    def ann_distance():
        with connect(url, autocommit=True) as conn:
            return round(conn.execute("SELECT distance FROM pgvision.identify('[0.5,0.45]')").fetchone()[0], 4)

    with connect(url, autocommit=True) as conn:
        model_id = register_model(conn, ModelSpec("face2d", "face", 2, "l2", threshold=0.5))
        ann = conn.execute("INSERT INTO pgvision.identities (name) VALUES ('ann') RETURNING identity_id").fetchone()[0]
        for key, vec in (("a1", [1.0, 0.0]), ("a2", [0.0, 1.0])):
            image_id = conn.execute("INSERT INTO pgvision.images (sha256, uri) VALUES (%s, %s) RETURNING image_id",
                                    (hashlib.sha256(key.encode()).digest(), key)).fetchone()[0]
            face_id = conn.execute(
                "INSERT INTO pgvision.faces "
                "(image_id, detector, box_left, box_top, box_right, box_bottom, identity_id) "
                "VALUES (%s, 'test', 0, 0, 10, 10, %s) RETURNING face_id",
                (image_id, ann),
            ).fetchone()[0]
            copy_vectors(conn, "face_embeddings", "face_id", model_id, np.array([face_id]), np.array([vec], np.float32))
    assert ann_distance() == 0.05                                  # v2: the gallery mean [0.5, 0.5]
    migrate.downgrade(url, "0001")
    assert ann_distance() == round(math.hypot(0.5, 0.45), 4)       # v1: the nearest face
    migrate.upgrade(url)
    assert ann_distance() == 0.05


def test_identity_from_parent_dir_enrolls_the_largest_face(database_url, tmp_path):
    folder = tmp_path / "Eileen Collins"
    folder.mkdir()
    (folder / "two.jpg").write_bytes(two_astronauts(tmp_path).read_bytes())
    (folder / "cat.jpg").write_bytes((PHOTOS / "chelsea_cat.jpg").read_bytes())
    result = CliRunner().invoke(
        main,
        [
            "faces",
            "load",
            str(tmp_path / "Eileen Collins"),
            "--identity-from",
            "parent-dir",
            "-q",
            "--database-url",
            database_url,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "loaded 2 photos, 2 faces (2 new embeddings), enrolled 1" in result.output
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT i.name, f.box_right - f.box_left FROM pgvision.faces f "
                            "LEFT JOIN pgvision.identities i USING (identity_id) ORDER BY f.face_id").fetchall()
    assert sorted(rows, key=lambda r: r[0] is None) == [("Eileen Collins", 63), (None, 62)]


def test_first_face_command_on_an_empty_database_creates_the_schema(empty_database_url):
    """As `pgvision load` does: reading commands say what to run, loading commands run it."""
    runner = CliRunner()
    out = runner.invoke(main, ["identify", str(ASTRONAUT), "--database-url", empty_database_url])
    assert out.exit_code == 1
    assert out.output == "Error: the database has no pgvision schema yet: run pgvision db upgrade\n"
    out = runner.invoke(main, ["enroll", "Eileen Collins", str(ASTRONAUT), "-q", "--database-url", empty_database_url])
    assert out.exit_code == 0, out.output
    assert "creating it (pgvision db upgrade)" in out.output
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT name, faces FROM pgvision.gallery").fetchall() == [("Eileen Collins", 1)]
