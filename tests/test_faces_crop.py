"""Pre-cropped faces (``--crop whole``, and the whole-image fallback of ``--crop detect``).

The fixture photo of Eileen Collins is cropped to 15 % inside HOG's own face box (sides and
top; the chin kept) and made AT&T-like (92x112, grey): HOG finds no face in it, the crop
modes do, and the embedding is the same person's (dlib L2 < 0.6 to the original photo's face).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psycopg
import pytest

pytest.importorskip("PIL", reason="Pillow is not installed: these tests need pip install 'pgvision[images]'")

from click.testing import CliRunner
from PIL import Image

from pgvision.cli import main

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
ASTRONAUT = PHOTOS / "astronaut_eileen_collins.jpg"


@pytest.fixture(scope="module")
def pipelines():
    pytest.importorskip("dlib", reason="the crop tests need dlib (pip install 'pgvision[faces]')")
    from pgvision.faces.detect import FaceDetector
    from pgvision.faces.embed import load_face_model
    from pgvision.faces.pipeline import FacePipeline

    model = load_face_model("dlib", None, "cpu")
    return FacePipeline(model, FaceDetector()), FacePipeline(model, FaceDetector(crop="whole"))


def rgb(path) -> np.ndarray:
    from pgvision.faces.pipeline import read_photo

    return read_photo(path).pixels


def att_crop(pipeline, path: Path) -> Image.Image:
    """The face of ``path`` cropped 15 % inside HOG's box (sides and top), 92x112 grey."""
    faces, _ = pipeline.embed_photo(rgb(path))
    left, top, right, bottom = faces[0].box
    w, h = right - left + 1, bottom - top + 1
    crop = Image.open(path).convert("RGB").crop((left + round(0.15 * w), top + round(0.15 * h),
                                                   right + 1 - round(0.15 * w), bottom + 1))
    return crop.convert("L").resize((92, 112))


def test_whole_image_face_where_hog_finds_none(pipelines):
    import dlib

    detect, whole = pipelines
    _, original = detect.embed_photo(rgb(ASTRONAUT))
    pixels = np.asarray(att_crop(detect, ASTRONAUT).convert("RGB"))
    assert pixels.shape == (112, 92, 3)
    assert len(dlib.get_frontal_face_detector()(pixels, 1)) == 0          # HOG, upsampled once: nothing
    for pipeline in (whole, detect):                                     # --crop whole, and detect's fallback
        faces, emb = pipeline.embed_photo(pixels)
        assert [(f.detector, f.box, f.score) for f in faces] == [("whole", (0, 0, 91, 111), None)]
        assert float(np.linalg.norm(emb[0] - original[0])) < 0.6          # dlib's same-person distance
    assert whole.detector.detector == "whole" and detect.detector.detector == "hog"


def test_detect_mode_takes_whole_only_crop_like_photos():
    from pgvision.faces.detect import looks_like_crop

    assert looks_like_crop(112, 92) and looks_like_crop(300, 300) and looks_like_crop(160, 100)
    assert not looks_like_crop(301, 250)       # larger than an exported crop
    assert not looks_like_crop(100, 200)       # aspect 0.5: a strip, not a face
    assert not looks_like_crop(170, 100)       # aspect 1.7


def test_fallback_applies_to_crop_like_photos_only(pipelines):
    detect, _ = pipelines
    cat = Image.open(PHOTOS / "chelsea_cat.jpg").convert("RGB")            # 320x213: not crop-like
    assert detect.embed_photo(np.asarray(cat))[0] == []
    # Downscaled to 160x107 it is crop-like: the fallback cannot tell a cat from a face and
    # takes it whole (the documented price of the fallback; docs/faces.md).
    small = np.asarray(cat.resize((160, 107)))
    assert [(f.detector, f.box) for f in detect.embed_photo(small)[0]] == [("whole", (0, 0, 159, 106))]


def test_faces_load_crop_whole_is_idempotent_and_recorded(database_url, tmp_path, pipelines):
    detect, _ = pipelines
    path = tmp_path / "eileen_att.png"
    att_crop(detect, ASTRONAUT).save(path)
    runner = CliRunner()
    db = ["--database-url", database_url]
    args = ["faces", "load", str(path), "--crop", "whole", "--quiet", *db]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "loaded 1 photos, 1 faces (1 new embeddings)" in result.output
    again = runner.invoke(main, args)
    assert (
        again.exit_code == 0
        and "loaded 0 photos, 0 faces (0 new embeddings), enrolled 0, already done 1" in again.output
    )
    # the default mode scans it again under its own detector: HOG finds nothing, the fallback keeps it
    result = runner.invoke(main, ["faces", "load", str(path), "--quiet", *db])
    assert result.exit_code == 0 and "loaded 1 photos, 1 faces (1 new embeddings)" in result.output
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT detector, box_left, box_top, box_right, box_bottom, detector_score "
                            "FROM pgvision.faces ORDER BY detector").fetchall()
    assert rows == [("hog", 0, 0, 91, 111, None), ("whole", 0, 0, 91, 111, None)]
    # enroll the crop, identify the original photo (a scene: detect mode)
    result = runner.invoke(main, ["enroll", "Eileen Collins", str(path), "--crop", "whole", "--quiet", *db])
    assert result.exit_code == 0 and "Eileen Collins: 1 gallery faces for model dlib" in result.output
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE pgvision.models SET threshold = 0.6 WHERE name = 'dlib'")   # dlib's published L2
    result = runner.invoke(main, ["identify", str(ASTRONAUT), *db])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("face 0 box (107, 46, 170, 108): Eileen Collins;")
    assert result.stderr.startswith("note: model dlib was never calibrated on this gallery: its threshold 0.6000 ")


def test_fallback_applies_when_hog_finds_only_a_face_too_small_to_align(pipelines):
    """A tight crop: Eileen Collins' face with 10 % margin around HOG's box, 160x192 (crop-like).
    HOG finds her 130 px wide there, under min_face_px 150; the whole image (160 px) is wide
    enough, and its embedding is hers (dlib L2 0.29 to the original photo's face)."""
    from pgvision.faces.detect import FaceDetector
    from pgvision.faces.pipeline import FacePipeline

    detect, _ = pipelines
    _, original = detect.embed_photo(rgb(ASTRONAUT))
    faces, _ = detect.embed_photo(rgb(ASTRONAUT))
    left, top, right, bottom = faces[0].box
    w, h = right - left + 1, bottom - top + 1
    loose = Image.open(ASTRONAUT).convert("RGB").crop(
        (left - round(0.1 * w), top - round(0.1 * h), right + 1 + round(0.1 * w), bottom + 1 + round(0.1 * h)))
    pixels = np.asarray(loose.resize((160, 192)))
    strict = FacePipeline(detect.model, FaceDetector(min_face_px=150))
    found = strict.detector.detect(pixels)
    assert [(f.detector, f.box, f.score) for f in found.faces] == [("whole", (0, 0, 159, 191), None)]
    assert found.too_small == []
    hog_only = FaceDetector(min_face_px=150)._boxes(pixels)
    assert [r.width() for r, _ in hog_only] == [130]  # what HOG saw: one face, too small to align
    _, emb = strict.embed_photo(pixels)
    assert float(np.linalg.norm(emb[0] - original[0])) < 0.6  # the same person (dlib's distance)
