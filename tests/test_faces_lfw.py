"""Faces on real LFW photos from ../shared/data/lfw_faces (skipped, saying why, without it).

Small on purpose (CI runs every engineer's tests on 2 cores; dlib does ~7 photos/s): the
whole-folder evaluation is ``pgvision eval identify`` (figures in docs/faces.md); here a
subset of 10 people x 10 photos checks the same path with floors a few points under what
it measures (rank-1 1.000, TPIR 1.000 at FPIR 0.02 for rule v2 on this subset).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pgvision.cli import main

LFW = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "lfw_faces"


@pytest.fixture(scope="module")
def lfw() -> Path:
    if not LFW.is_dir():
        pytest.skip(f"{LFW} is absent: these tests need the shared LFW photos beside the repository")
    return LFW


def photos(root: Path, person: str, numbers) -> list[str]:
    return [str(root / person / f"{person}_{n:04d}.jpg") for n in numbers]


def test_enroll_identify_known_and_unknown(lfw, database_url):
    runner = CliRunner()
    db = ["--database-url", database_url]
    for person in ("Alejandro_Toledo", "Amelie_Mauresmo", "Andre_Agassi"):
        result = runner.invoke(main, ["enroll", person.replace("_", " "), *photos(lfw, person, range(1, 5)), "-q", *db])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["calibrate", "--model", "dlib", "--target-far", "0.01", *db])
    assert result.exit_code == 0, result.output
    assert "3 identities, 12 gallery faces; 12 genuine, 24 impostor comparisons" in result.output
    threshold = float(re.search(r"stored: threshold ([0-9.]+)", result.output).group(1))
    assert 0.4 < threshold < 0.7

    def who(path):
        out = runner.invoke(main, ["identify", path, "--json", *db])
        assert out.exit_code == 0, out.output
        return [json.loads(line) for line in out.output.splitlines()]

    known = who(photos(lfw, "Amelie_Mauresmo", [12])[0])
    assert [f["name"] for f in known] == ["Amelie Mauresmo"] and known[0]["distance"] <= threshold
    stranger = who(photos(lfw, "Angelina_Jolie", [3])[0])      # never enrolled
    assert [f["name"] for f in stranger] == [None]
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM pgvision.calibrations").fetchone()[0] == 1


def test_eval_identify_on_a_subset(lfw, database_url, tmp_path):
    subset = tmp_path / "lfw10"
    for person in sorted(p.name for p in lfw.iterdir() if p.is_dir())[:10]:
        (subset / person).mkdir(parents=True)
        for path in photos(lfw, person, range(1, 11)):
            (subset / person / Path(path).name).symlink_to(path)
    plot = tmp_path / "tpir.png"
    result = CliRunner().invoke(main, ["eval", "identify", str(subset), "--enroll-per-identity", "5",
                                       "--unknown-fraction", "0.5", "--plot", str(plot), "-q",
                                       "--database-url", database_url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "10 identities, 5 enrolled with 25 faces; probes: 25 mated, 50 non-mated" in out
    rank1 = float(re.search(r"closed-set rank-1 ([0-9.]+)", out).group(1))
    assert rank1 >= 0.95
    v2 = re.search(r"v2 \(SQL rule\)\s+([0-9.]+) @\S+\s+([0-9.]+) @\S+\s+([0-9.]+)", out)
    assert float(v2.group(3)) >= 0.92                           # TPIR at FPIR <= 0.02
    agree = re.search(r"agrees with the numpy rule on (\d+) of (\d+) probes", out)
    assert agree.group(1) == agree.group(2)
    assert plot.stat().st_size > 10_000
    with psycopg.connect(database_url) as conn:                # the scratch database is gone
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'pgvision_eval_%'").fetchone()[0] == 0
