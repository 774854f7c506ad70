"""The core install (``pip install pgvision``, no extras): migrate, load vectors, search.

The README promises that the database side works without torch, Pillow, dlib or SciPy.
These tests run the real ``pgvision`` command in a fresh interpreter whose extras fail to
import (:func:`conftest.without_extras`); .ci/run also runs every test marked ``core`` in a
second virtual environment that holds only the core dependencies and pytest, where the
extras are truly absent.

Vectors (2-d, cosine, L2-normalised on load): left = [1, 0], diagonal = [1, 1], up = [0, 1].
Cosine distances from the query [1, 0]: left 0, diagonal 1 - 1/sqrt(2) = 0.29289, up 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from conftest import REPO, without_extras
from sqlhelpers import add_images

pytestmark = pytest.mark.core

CLI = [sys.executable, "-c", "from pgvision.cli import main; main()"]


def core_cli(args: list[str], database_url: str, cwd: Path) -> subprocess.CompletedProcess:
    """``pgvision ARGS`` in a fresh interpreter where the extras' modules do not import."""
    path = [str(without_extras(cwd / "no-extras")), str(REPO / "loader")]
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONPATH=os.pathsep.join(path))
    return subprocess.run(CLI + args, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_db_upgrade_load_vectors_and_search_without_the_extras(empty_database_url, tmp_path):
    up = core_cli(["db", "upgrade"], empty_database_url, tmp_path)
    assert up.returncode == 0, up.stderr
    (tmp_path / "v.txt").write_text("a|left|{1,0}\nb|diagonal|{1,1}\nc|up|{0,1}\n")
    load = core_cli(["load-vectors", "v.txt", "--model", "core2d", "-q"], empty_database_url, tmp_path)
    assert (load.returncode, load.stderr) == (0, "")
    assert load.stdout.startswith("loaded 3, already present 0, skipped 0\n")
    with psycopg.connect(empty_database_url) as c:
        rows = c.execute(
            "SELECT label, round(distance::numeric, 5) "
            "FROM pgvision.search_images('[1,0]', k => 3, model => 'core2d')"
        ).fetchall()
    assert rows == [("left", Decimal("0.00000")), ("diagonal", Decimal("0.29289")), ("up", Decimal("1.00000"))]


@pytest.mark.parametrize(
    "args, module, extra",
    [
        (["load", "photos"], "torch", "images"),
        (["search", "probe.jpg"], "torch", "images"),
        # A face command names the extra that brings everything it needs (faces includes images).
        (["faces", "load", "photos"], "Pillow", "faces"),
    ],
)
def test_a_command_that_needs_an_extra_names_it_in_one_line(database_url, tmp_path, args, module, extra):
    (tmp_path / "photos").mkdir()
    (tmp_path / "probe.jpg").write_bytes(b"")
    if args[0] == "search":  # search asks the database first: give it an image model to search
        with psycopg.connect(database_url) as c:
            add_images(c, "efficientnet-lite0", [("x", None, [1.0] * 1280)], metric="cosine")
    run = core_cli(args, database_url, tmp_path)
    assert (run.returncode, run.stderr) == (
        1,
        f"Error: this command needs {module}, which is not installed: pip install 'pgvision[{extra}]'\n",
    )
