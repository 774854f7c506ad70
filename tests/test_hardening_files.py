"""Hostile ``.npy`` files and out-of-range values: one line each, nothing stored."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from click.testing import CliRunner
from numpy.lib import format as npy_format

from conftest import REPO
from pgvision.cli import main


def _load(path, database_url, model="toy"):
    return CliRunner().invoke(
        main,
        ["load-vectors", str(path), "--model", model, "--metric", "l2", "--quiet"],
        env={"DATABASE_URL": database_url},
    )


def test_a_header_declaring_a_huge_shape_is_one_line(tmp_path, database_url):
    path = tmp_path / "huge.npy"
    with open(path, "wb") as fh:  # 10^12 x 512 float32 declared (2 PB), 24 bytes of data
        npy_format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (10**12, 512)})
        fh.write(b"\0" * 24)
    result = _load(path, database_url)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {path} declares a 1000000000000 x 512 float32 array (2,048,000,000,000,000 bytes) but holds 24 bytes "
        "of data: the file is cut short or its header is wrong; save it again with numpy.save\n"
    )


def test_a_file_cut_short_is_one_line(tmp_path, database_url):
    whole = tmp_path / "whole.npy"
    np.save(whole, np.ones((2, 3), np.float32))  # 128-byte header + 24 bytes
    cut = tmp_path / "cut.npy"
    cut.write_bytes(whole.read_bytes()[:140])
    result = _load(cut, database_url)
    assert result.output == (
        f"Error: {cut} declares a 2 x 3 float32 array (24 bytes) but holds 12 bytes of data: the file is cut short "
        "or its header is wrong; save it again with numpy.save\n"
    )
    header_cut = tmp_path / "header_cut.npy"
    header_cut.write_bytes(whole.read_bytes()[:30])
    result = _load(header_cut, database_url)
    assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: {header_cut} has a broken .npy header (")


def test_a_wide_value_beyond_halfvec_range_is_one_line(tmp_path, database_url):
    """2001 dimensions are indexed as halfvec (float16, largest finite 65,504): 70,000 cannot be."""
    vectors = np.zeros((2, 2001), np.float32)
    vectors[:, 0] = 1
    vectors[1, 5] = 70000
    path = tmp_path / "wide.npy"
    np.save(path, vectors)
    result = _load(path, database_url, model="wide")
    assert result.exit_code == 1
    assert result.output.startswith("Error: embedding of ") and len(result.output.splitlines()) == 1, result.output
    assert "values beyond +-65,504, which the halfvec index of a 2001-d model cannot hold" in result.output


def test_face_commands_name_the_faces_extra_for_any_missing_module(tmp_path, database_url):
    """Pillow belongs to pgvision[images], which pgvision[faces] includes: a face command
    names the one extra that makes it work. The command runs in a fresh interpreter where
    Pillow does not import (in this process earlier tests have imported it already), against
    a migrated database of its own."""
    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"\xff\xd8")
    code = (
        "import sys; sys.modules['PIL'] = None; sys.modules['PIL.Image'] = None; "
        "from pgvision.cli import main; main()"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO / "loader"))
    run = subprocess.run(
        [sys.executable, "-c", code, "identify", str(photo), "--database-url", database_url],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert (run.returncode, run.stderr) == (
        1,
        "Error: this command needs Pillow, which is not installed: pip install 'pgvision[faces]'\n",
    )


def test_a_vectors_only_model_of_other_dims_is_advised_load_vectors(tmp_path, database_url):
    np.save(tmp_path / "two.npy", np.eye(2, dtype=np.float32))
    np.save(tmp_path / "three.npy", np.eye(3, dtype=np.float32))
    assert _load(tmp_path / "two.npy", database_url).exit_code == 0
    result = _load(tmp_path / "three.npy", database_url)
    assert result.exit_code == 1
    assert result.output.endswith(
        "load under another model name (pgvision load-vectors FILE --model NEW_NAME ...), "
        "or into another database (--database-url)\n"
    )


def test_the_progress_bar_is_cleared_before_the_summary(tmp_path, database_url):
    np.save(tmp_path / "v.npy", np.eye(3, dtype=np.float32))
    result = CliRunner().invoke(
        main,
        ["load-vectors", str(tmp_path / "v.npy"), "--model", "bar", "--metric", "l2"],
        env={"DATABASE_URL": database_url},
    )
    assert result.exit_code == 0, result.output
    assert "loading vectors (bar)" in result.stderr  # the bar was shown...
    assert "\n" not in result.stderr  # ...and wiped (\r), no line of it left above the summary
    assert result.stdout.startswith("loaded 3, already present 0, skipped 0")


def test_search_checks_the_read_url_before_loading_a_model(monkeypatch, tmp_path, database_url):
    """A wrong --read-url is found in a second, not after torch and the weights are loaded."""
    photo = tmp_path / "q.jpg"
    photo.write_bytes(b"\xff\xd8")
    monkeypatch.setitem(__import__("sys").modules, "torch", None)  # loading a model would fail now
    bad = "postgresql://postgres@/pgvision?host=/nonexistent-replica"
    result = CliRunner().invoke(main, ["search", str(photo), "--read-url", bad], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot connect to {bad}: ")
    assert result.output.endswith("start that server, fix PGVISION_READ_URL, or unset it to read from DATABASE_URL\n")
