"""``pgvision search IMAGE`` and ``pgvision similar IMAGE_ID`` on a real database.

Four real photos (tests/fixtures/photos) plus crops of them are loaded with
efficientnet-lite0; a crop of the cat must find the cat photos first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PIL", reason="Pillow is not installed: these tests need pip install 'pgvision[images]'")

from click.testing import CliRunner
from PIL import Image

from pgvision.cli import main
from pgvision.cli.search import format_table
from pgvision.server.connection import connect

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"


@pytest.fixture
def loaded(database_url, tmp_path):
    """A database holding the fixture photos and two crops of each (labels = photo names)."""
    folder = tmp_path / "photos"
    for photo in sorted(PHOTOS.glob("*.jpg")):
        (folder / photo.stem).mkdir(parents=True)
        im = Image.open(photo).convert("RGB")
        im.save(folder / photo.stem / "full.jpg")
        w, h = im.size
        im.crop((0, 0, int(w * 0.8), int(h * 0.8))).save(folder / photo.stem / "crop_a.jpg")
        im.crop((int(w * 0.2), int(h * 0.2), w, h)).save(folder / photo.stem / "crop_b.jpg")
    result = invoke(["load", str(folder), "--quiet", "--workers", "0"], database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("loaded 12, already present 0, skipped 0")
    return folder


def invoke(args, database_url):
    return CliRunner().invoke(main, args, env={"DATABASE_URL": database_url}, catch_exceptions=False)


def test_search_quiet_prints_the_hits_lines_only(loaded, database_url):
    probe = str(PHOTOS / "chelsea_cat.jpg")
    full = invoke(["search", probe, "-k", "3"], database_url)
    quiet = invoke(["search", probe, "-k", "3", "--quiet"], database_url)
    assert full.exit_code == quiet.exit_code == 0, full.output + quiet.output
    header = full.stdout.splitlines()[:2]
    assert header[0].split() == ["image_id", "distance", "similarity", "label", "uri"]
    assert quiet.stdout.splitlines() == full.stdout.splitlines()[2:] and len(quiet.stdout.splitlines()) == 3
    assert quiet.stderr == ""
    none = invoke(["search", probe, "--label", "no such label", "--quiet"], database_url)
    assert (none.exit_code, none.stdout) == (0, "")
    assert invoke(["search", probe, "--label", "no such label"], database_url).stdout == "(no rows)\n"


def test_search_finds_the_same_subject_first(loaded, database_url, tmp_path):
    probe = tmp_path / "probe.jpg"
    im = Image.open(PHOTOS / "chelsea_cat.jpg").convert("RGB")
    im.crop((40, 20, 300, 200)).save(probe)
    result = invoke(["search", str(probe), "-k", "3", "--json"], database_url)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert [h["label"] for h in hits] == ["chelsea_cat"] * 3
    assert list(hits[0]) == ["image_id", "distance", "similarity", "label", "uri"]
    assert hits[0]["distance"] <= hits[1]["distance"] <= hits[2]["distance"]
    assert abs(hits[0]["similarity"] - (1 - hits[0]["distance"])) < 1e-9
    # A stored file as the probe finds itself at distance ~0.
    own = loaded / "coffee_cup" / "full.jpg"
    result = invoke(["search", str(own), "-k", "1", "--json"], database_url)
    (hit,) = json.loads(result.stdout)
    assert hit["uri"] == own.resolve().as_uri() and hit["distance"] < 1e-4


def test_search_with_label_filter_and_table_output(loaded, database_url):
    result = invoke(["search", str(PHOTOS / "chelsea_cat.jpg"), "-k", "2", "--label", "coffee_cup"], database_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["image_id", "distance", "similarity", "label", "uri"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 4 and all(" coffee_cup " in line for line in lines[2:])


def test_similar_excludes_the_probe_and_keeps_the_subject(loaded, database_url):
    with connect(database_url) as conn:
        image_id, uri = conn.execute(
            "SELECT image_id, uri FROM pgvision.images WHERE uri LIKE '%%/falcon9_rocket/full.jpg'"
        ).fetchone()
    result = invoke(["similar", str(image_id), "-k", "2", "--json"], database_url)
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert image_id not in [h["image_id"] for h in hits]
    assert [h["label"] for h in hits] == ["falcon9_rocket", "falcon9_rocket"]


def test_errors_are_one_line(loaded, database_url, tmp_path):
    result = invoke(["similar", "999999"], database_url)
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: no image with image_id 999999 (pick one from pgvision.images)"
    result = invoke(["similar", "1", "-k", "0"], database_url)
    assert result.exit_code == 1 and result.stderr.startswith("Error: k must be between 1 and 1000, got 0")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    result = invoke(["search", str(bad)], database_url)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: cannot use {bad} as a probe: empty: zero-byte file"
    result = invoke(["similar", "1", "--model", "resnet50"], database_url)
    assert result.exit_code == 1 and "resnet50" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_format_table_aligns_columns_and_handles_nulls():
    rows = [
        {"image_id": 7, "distance": 0.25, "similarity": 0.75, "label": None, "uri": "file:///a.jpg"},
        {"image_id": 12, "distance": 0.5, "similarity": 0.5, "label": "cat", "uri": "file:///bb.jpg"},
    ]
    assert format_table(rows).splitlines() == [
        "image_id  distance  similarity  label  uri",
        "--------  --------  ----------  -----  --------------",
        "7         0.2500    0.7500             file:///a.jpg",
        "12        0.5000    0.5000      cat    file:///bb.jpg",
    ]
    assert format_table([]) == "(no rows)"
