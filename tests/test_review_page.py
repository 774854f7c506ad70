"""Review pages (pgvision.review.page): real photos, real headless Chromium."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("PIL", reason="Pillow is not installed: these tests need pip install 'pgvision[images]'")


from browser import assert_all_rendered
from conftest import shared_path
from pgvision.ingest.files import FileSkipped, file_uri
from pgvision.review.page import Section, Thumb, thumbnail_uri, write_page

pytest.importorskip("PIL")


def test_page_renders_photos_crops_and_placeholders(tmp_path):
    people = shared_path("data", "lfw_faces")
    photos = sorted((people / "Andre_Agassi").glob("*.jpg"))[:2]
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not a photo")
    page = tmp_path / "page.html"
    counts = write_page(page, "Review <&> \"test\"", [
        Section("group 1 <b>", [
            Thumb(photos[0], "keeper <script>alert(1)</script>", marked=True),
            Thumb(file_uri(photos[1]), "by file:// uri"),
            Thumb(photos[0], "face crop", box=(70, 60, 180, 190)),
        ]),
        Section("gone", [
            Thumb(tmp_path / "deleted.jpg", "deleted photo"),
            Thumb(not_an_image, "text file"),
            Thumb(None, "no file"),
        ]),
    ], size=96)
    assert (counts.sections, counts.thumbs, counts.placeholders) == (2, 6, 3)
    assert [reason.split(":")[0] for _, reason in counts.problems] == [
        "unreadable",
        "not-an-image",
        "no file for this image",
    ]
    text = page.read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<title>Review &lt;&amp;&gt; &quot;test&quot;</title>" in text
    assert "group 1 &lt;b&gt;" in text
    assert "src=\"file:" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")

    images = assert_all_rendered(page)
    assert [im["placeholder"] for im in images] == [False, False, False, True, True, True]
    assert [im["marked"] for im in images] == [True, False, False, False, False, False]
    # 250x250 LFW photos at 96 px; the 110x130 face crop keeps its aspect ratio.
    assert [(im["naturalWidth"], im["naturalHeight"]) for im in images[:3]] == [(96, 96), (96, 96), (81, 96)]


def test_thumbnail_keeps_the_loader_limits(tmp_path, monkeypatch):
    photo = min(shared_path("data", "lfw_faces", "Andre_Agassi").glob("*.jpg"))
    monkeypatch.setenv("PGVISION_MAX_FILE_BYTES", "100")
    with pytest.raises(FileSkipped) as info:
        thumbnail_uri(photo, 64)
    assert info.value.reason == "too-large"
    assert os.fspath(photo) in str(info.value)


def test_page_size_below_16_is_refused(tmp_path):
    with pytest.raises(ValueError, match="thumbnail size 8 px is too small: give 16 px or more"):
        write_page(tmp_path / "p.html", "t", [], size=8)
