"""Duplicates on real photos loaded through the loader: a re-saved JPEG, a PNG copy, a resized
and a 10 %-cropped copy are the same picture; two different photos of one person are not.
The CLI's table, JSON and HTML page (checked in headless Chromium), and hashes filled in
afterwards for images loaded without them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from browser import assert_all_rendered
from conftest import shared_path
from pgvision.cli import main
from pgvision.duplicates.fill import fill_hashes
from pgvision.duplicates.groups import find_duplicates_of, find_groups
from pgvision.load_images import load_images
from pgvision.models import load_image_model
from pgvision.server.connection import connect

Image = pytest.importorskip("PIL.Image")

SAME = ["a0_original.jpg", "a1_q35.jpg", "a2_half.jpg", "a3_crop10.jpg", "a4_png.png"]
OTHERS = ["b_other_photo_1.jpg", "b_other_photo_2.jpg", "c_someone_else.jpg"]


@pytest.fixture(scope="module")
def lite0():
    return load_image_model("efficientnet-lite0", device="cpu")


def make_set(root: Path) -> Path:
    """One LFW photo (250x250) and four copies of it, two other photos of the same person,
    one photo of someone else; all in one folder (label ``photos``)."""
    agassi = sorted(shared_path("data", "lfw_faces", "Andre_Agassi").glob("*.jpg"))
    other = min(shared_path("data", "lfw_faces", "Alvaro_Uribe").glob("*.jpg"))
    folder = root / "photos"
    folder.mkdir()
    shutil.copy(agassi[0], folder / SAME[0])
    im = Image.open(agassi[0]).convert("RGB")
    im.save(folder / SAME[1], quality=35)
    im.resize((125, 125), Image.Resampling.LANCZOS).save(folder / SAME[2], quality=90)
    im.crop((25, 25, 250, 250)).save(folder / SAME[3], quality=90)  # 10 % off the left and the top
    im.save(folder / SAME[4])
    shutil.copy(agassi[1], folder / OTHERS[0])
    shutil.copy(agassi[2], folder / OTHERS[1])
    shutil.copy(other, folder / OTHERS[2])
    return folder


def names(rows) -> list[str]:
    return [r["uri"].rsplit("/", 1)[-1] for r in rows]


@pytest.fixture
def loaded(database_url, lite0, tmp_path):
    folder = make_set(tmp_path)
    with connect(database_url, autocommit=True) as conn:
        summary = load_images(conn, [folder], lite0, workers=0, progress=False, build_index=True)
        assert summary.loaded == 8
    return folder


def test_copies_are_same_and_other_photos_of_the_person_are_not(database_url, loaded):
    with connect(database_url, autocommit=True) as conn:
        rows = find_groups(conn, "same")
        # one group, nearest to the keeper first: the original keeps it (250x250 like the
        # PNG, and stored first)
        assert names(rows)[0] == SAME[0] and sorted(names(rows)) == SAME
        assert [r["is_keeper"] for r in rows] == [True, False, False, False, False]
        assert rows[0]["group_id"] == rows[0]["image_id"]
        assert all(r["hash_distance"] <= 12 and r["distance"] <= 0.34 for r in rows)
        other = conn.execute("SELECT image_id FROM pgvision.images WHERE uri LIKE %s",
                             ("%" + OTHERS[0],)).fetchone()[0]
        assert find_duplicates_of(conn, other, "same") == []
        crop = conn.execute("SELECT image_id FROM pgvision.images WHERE uri LIKE %s", ("%" + SAME[3],)).fetchone()[0]
        assert sorted(names(find_duplicates_of(conn, crop, "same"))) == SAME
        similar = find_groups(conn, "similar")
        assert set(SAME) <= set(names(similar))
        assert OTHERS[2] not in names(similar)


def test_fill_hashes_gives_the_loaders_hashes_and_is_resumable(database_url, loaded):
    with connect(database_url, autocommit=True) as conn:
        before = dict(conn.execute("SELECT uri, phash::text || phash_crops::text FROM pgvision.images").fetchall())
        assert all(v is not None for v in before.values())
        conn.execute("UPDATE pgvision.images SET phash = NULL, phash_crops = NULL")
        (loaded / OTHERS[1]).unlink()
        (loaded / OTHERS[2]).write_bytes(b"changed since it was loaded")
        report = fill_hashes(conn, batch_size=3, progress=False)
        assert (report.hashed, dict(report.skipped), report.remaining) == (6, {"unreadable": 1, "changed": 1}, 2)
        after = dict(conn.execute("SELECT uri, phash::text || phash_crops::text FROM pgvision.images "
                                  "WHERE phash IS NOT NULL").fetchall())
        assert after == {uri: v for uri, v in before.items() if uri in after}
        assert fill_hashes(conn, progress=False).hashed == 0  # a rerun has nothing left it can do
        assert sorted(names(find_groups(conn, "same"))) == SAME


def test_cli_table_json_and_html_page(database_url, loaded, tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["duplicates", "--json", "--database-url", database_url])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.stdout)
    assert sorted(names(rows)) == SAME
    assert set(rows[0]) == {"group_id", "image_id", "uri", "label", "is_keeper", "distance", "hash_distance",
                            "width", "height"}
    other = next(str(r["image_id"]) for r in rows if r["uri"].endswith(SAME[3]))
    out = runner.invoke(main, ["duplicates", "--of", other, "--json", "--database-url", database_url])
    assert out.exit_code == 0, out.output
    assert sorted(names(json.loads(out.stdout))) == SAME
    (loaded / SAME[1]).unlink()  # a photo that is gone shows a placeholder
    page = tmp_path / "dups.html"
    out = runner.invoke(main, ["duplicates", "--html", str(page), "--database-url", database_url])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["group_id", "image_id", "keeper", "distance", "hash", "size", "label", "uri"]
    assert len(lines) == 2 + len(SAME)
    assert f"wrote {page}: 1 groups, 5 thumbnails, 1 not found" in out.stderr
    images = assert_all_rendered(page)
    assert [im["marked"] for im in images] == [True, False, False, False, False]
    gone = next(r["image_id"] for r in rows if r["uri"].endswith(SAME[1]))
    assert [im["alt"] for im in images if im["placeholder"]] == [f"image {gone}"]
    out = runner.invoke(main, ["duplicates", "--fill-hashes", "--quiet", "--database-url", database_url])
    assert out.exit_code == 0, out.output
    assert out.stderr == "hashed 0 images; skipped 0; 0 still without a hash\n"
    out = runner.invoke(main, ["duplicates", "--tier", "nope", "--database-url", database_url])
    assert out.exit_code == 2 and "'nope' is not one of 'same', 'similar'" in out.output


def test_search_and_similar_html_pages_in_rank_order(database_url, loaded, tmp_path):
    runner = CliRunner()
    with connect(database_url) as conn:
        original = conn.execute("SELECT image_id FROM pgvision.images WHERE uri LIKE %s",
                                ("%" + SAME[0],)).fetchone()[0]
    page = tmp_path / "similar.html"
    out = runner.invoke(main, ["similar", str(original), "-k", "4", "--html", str(page),
                               "--database-url", database_url])
    assert out.exit_code == 0, out.output
    images = assert_all_rendered(page)
    assert len(images) == 5  # the query, then four results
    assert [im["marked"] for im in images] == [True, False, False, False, False]
    assert [im["alt"] for im in images][1:] == [f"#{i} image {r}" for i, r in enumerate(
        [line.split()[0] for line in out.stdout.splitlines()[2:]], 1)]
    page = tmp_path / "search.html"
    out = runner.invoke(main, ["search", str(loaded / SAME[3]), "-k", "3", "--device", "cpu", "--html", str(page),
                               "--database-url", database_url])
    assert out.exit_code == 0, out.output
    images = assert_all_rendered(page)
    assert [im["alt"] for im in images][0] == "query"
    assert [im["alt"].split(" ", 1)[0] for im in images[1:]] == ["#1", "#2", "#3"]
    assert f"wrote {page}: 4 thumbnails" in out.stderr
