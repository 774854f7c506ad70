"""Hostile ``.npy`` files and out-of-range values: one line each, nothing stored."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from numpy.lib import format as npy_format

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
