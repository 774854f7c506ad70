"""bench/: each benchmark imports, of bench/'s own modules, only bench/common.py.

A benchmark that imports another one couples two measurements (a change made for one moves
the other's figures); shared pieces live in bench/common.py. Design experiments that were
not adopted live in bench/experiments/, each listed in its README with what was decided.
"""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_modules() -> set[str]:
    return {p.stem for p in BENCH.glob("*.py")} | {p.stem for p in (BENCH / "experiments").glob("*.py")}


def imported(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_bench_scripts_import_only_common_from_bench():
    own = bench_modules()
    scripts = [p for p in [*BENCH.glob("*.py"), *(BENCH / "experiments").glob("*.py")] if p.stem != "common"]
    assert scripts
    wrong = {p.relative_to(BENCH).as_posix(): sorted((imported(p) & own) - {"common"}) for p in scripts}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_every_experiment_is_listed_in_the_experiments_readme():
    readme = (BENCH / "experiments" / "README.md").read_text()
    for p in (BENCH / "experiments").glob("*.py"):
        assert f"`{p.name}`" in readme, p.name
