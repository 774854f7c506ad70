"""Every SQL example of the README and of docs/reference.md runs on a real server, and
where the document shows its output, the rows (ids, labels, distances to 3 decimals) are
what the server returns.

The database holds the four fixture photos, loaded as the README's main job does, and
the astronaut enrolled as the README's identity example does, both with the model and the
decoder on the CPU (``--device cpu --decode cpu``): the README's figures were computed
there, and a GPU's kernels (cuDNN, nvJPEG) differ in the last decimals. The fixture runs
them as on a GPU machine (torch says CUDA is available), so a command that would take the
GPU fails here too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: The documents whose ```sql examples run here, in this order (test_bi_clients runs them too).
DOCUMENTS = (README, ROOT / "docs" / "reference.md")
PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
#: The README's outputs are compared to 3 decimals: computed on the CPU on every machine.
ON_CPU = ("--device", "cpu")

pytest.importorskip("torch", reason="the README's main job embeds photos: pip install -e '.[images]'")
pytest.importorskip("dlib", reason="the README's identity example enrolls a face: pip install -e '.[faces]'")


def examples(documents=DOCUMENTS) -> list[tuple[str, str | None]]:
    """(sql, output or None) pairs: a ```sql block and the plain ``` block right after it."""
    pairs = []
    for document in documents:
        blocks = re.findall(r"```(\w*)\n(.*?)```", document.read_text(), re.DOTALL)
        for i, (lang, body) in enumerate(blocks):
            if lang == "sql":
                nxt = blocks[i + 1] if i + 1 < len(blocks) else None
                pairs.append((body, nxt[1] if nxt and nxt[0] == "" else None))
    return pairs


def parse_tables(text: str) -> list[list[dict[str, str]]]:
    """psql's aligned output -> one list of {column: value} rows per table."""
    tables, lines = [], text.strip("\n").splitlines()
    i = 0
    while i < len(lines):
        if i + 1 < len(lines) and re.fullmatch(r"[-+]+", lines[i + 1].strip()):
            cols = [c.strip() for c in lines[i].split("|")]
            rows, i = [], i + 2
            while i < len(lines) and "|" in lines[i]:
                rows.append(dict(zip(cols, (v.strip() for v in lines[i].split("|")), strict=True)))
                i += 1
            tables.append(rows)
        else:
            i += 1
    return tables


def same(expected: str, got) -> bool:
    if got is None:
        return expected == ""
    if isinstance(got, bool):
        return expected == ("t" if got else "f")
    try:
        return abs(float(expected) - float(got)) <= 1e-3
    except (TypeError, ValueError):
        return expected == str(got)


@pytest.fixture(scope="module")
def loaded(server_conninfo, template_db):
    """One database for the module, with the fixture photos loaded by `pgvision load`."""
    import torch
    from click.testing import CliRunner
    from psycopg.conninfo import make_conninfo

    from conftest import _drop, _fresh_database
    from pgvision.cli import main

    name = _fresh_database(server_conninfo, template_db)
    url = make_conninfo(server_conninfo, dbname=name)
    with pytest.MonkeyPatch.context() as gpu_machine:
        gpu_machine.setattr(torch.cuda, "is_available", lambda: True)
        result = CliRunner().invoke(main, ["load", str(PHOTOS), *ON_CPU, "--decode", "cpu", "--quiet",
                                           "--database-url", url])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(main, ["enroll", "Eileen Collins", str(PHOTOS / "astronaut_eileen_collins.jpg"),
                                           *ON_CPU, "--quiet", "--database-url", url])
        assert result.exit_code == 0, result.output
    yield url
    _drop(server_conninfo, name)


def test_readme_and_reference_have_sql_examples():
    """The README keeps its main SQL examples; the reference holds the rest, each shown with output."""
    assert len(examples([README])) == 5
    in_reference = examples([DOCUMENTS[1]])
    assert len(in_reference) == 3
    assert all(output is not None for _, output in in_reference)


@pytest.mark.parametrize("index", range(len(examples())))
def test_readme_sql_example(loaded, index):
    import psycopg

    sql, output = examples()[index]
    statements = [s.strip() for s in sql.split(";") if s.strip() and not s.strip().startswith("--")]
    with psycopg.connect(loaded) as conn:
        results = []
        for stmt in statements:
            cur = conn.execute(stmt)
            if cur.description:
                cols = [d.name for d in cur.description]
                results.append([dict(zip(cols, row, strict=True)) for row in cur.fetchall()])
        conn.rollback()  # examples such as CREATE ROLE leave nothing behind
    if output is None:
        return
    expected = parse_tables(output)
    assert len(expected) == len(results)
    for want, got in zip(expected, results, strict=True):
        assert len(want) == len(got)
        for w, g in zip(want, got, strict=True):
            for col, value in w.items():
                if col in ("uri", "ann_ms", "exact_ms"):  # machine-dependent
                    continue
                assert same(value, g[col]), (col, value, g[col])
