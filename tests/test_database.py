"""Where the database is: clear one-line errors for a stopped server or a server without
pgvector, and the `pgvision db` commands on the embedded server."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import psycopg
import pytest
from click.testing import CliRunner

from conftest import without_extras
from pgvision import migrate
from pgvision.cli import main
from pgvision.errors import DatabaseUnreachable, ExtensionMissing
from pgvision.server import tuning
from pgvision.server.connection import connect

REPO = Path(__file__).resolve().parents[1]


def test_stopped_server_gives_one_line_with_url_and_fix(tmp_path):
    url = f"postgresql://postgres@/pgvision?host={tmp_path}"
    with pytest.raises(DatabaseUnreachable) as err:
        connect(url)
    msg = str(err.value)
    assert msg.startswith(f"cannot connect to {url}: ")
    assert msg.endswith(
        "start that server, fix DATABASE_URL, or unset it to use the embedded server (pgvision db start)"
    )
    assert "\n" not in msg


def test_password_is_not_printed(tmp_path):
    with pytest.raises(DatabaseUnreachable) as err:
        connect(f"postgresql://app:s3cret@/db?host={tmp_path}")
    assert "s3cret" not in str(err.value)
    assert "postgresql://app:***@/db" in str(err.value)


def test_cli_reports_unreachable_server_on_one_line(tmp_path):
    result = CliRunner().invoke(main, ["db", "upgrade", "--database-url", f"postgresql://postgres@/x?host={tmp_path}"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot connect to postgresql://postgres@/x?host=")
    assert len(result.output.strip().splitlines()) == 1


def _debian_pg_bin() -> Path | None:
    for initdb in sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True):
        return initdb.parent
    return None


@pytest.fixture
def server_without_pgvector():
    """A real PostgreSQL without pgvector: Debian's packaged server (bookworm has no pgvector)."""
    bindir = _debian_pg_bin()
    if (
        bindir is None
        or (
            bindir.parent.parent.parent / "share" / "postgresql" / bindir.parent.name / "extension" / "vector.control"
        ).exists()
    ):
        pytest.skip("needs a Debian PostgreSQL without pgvector (apt install postgresql) to prove the error")
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    top = Path(tempfile.mkdtemp(prefix="pgv-nopgvector-"))  # pytest's tmp is 0700: postgres could not enter
    os.chmod(top, 0o755)
    data, sock = top / "pgdata", top / "sock"
    for d in (data, sock):
        d.mkdir()
        if run_as:
            shutil.chown(d, "postgres", "postgres")
    subprocess.run(run_as + [str(bindir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-o", f"-h '' -k {sock}",
                             "-l", str(data / "log"), "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@/postgres?host={sock}"
    finally:
        subprocess.run(run_as + [str(bindir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def test_server_without_pgvector_is_refused_and_nothing_is_created(server_without_pgvector):
    url = server_without_pgvector
    with pytest.raises(ExtensionMissing) as err:
        migrate.upgrade(url)
    assert str(err.value).startswith(
        f"the server at {url} has no pgvector extension: "
        "install it (Debian/Ubuntu: apt install postgresql-<major>-pgvector;"
    )
    with psycopg.connect(url) as c:
        assert c.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'pgvision'").fetchone()[0] == 0
        assert c.execute("SELECT to_regclass('public.pgvision_alembic_version')").fetchone()[0] is None


def test_db_commands_on_an_embedded_server(server_home):
    tmp_path = server_home
    env = {"PGVISION_DATA_DIR": str(tmp_path / "pg")}
    runner = CliRunner()
    try:
        status = runner.invoke(main, ["db", "status"], env=env)
        assert status.exit_code == 0 and "initialised:    no" in status.output
        url = runner.invoke(main, ["db", "url"], env=env)
        assert url.exit_code == 0
        assert url.output.strip() == f"postgresql://postgres@/pgvision?host={tmp_path / 'pg'}"
        up = runner.invoke(main, ["db", "upgrade"], env=env)
        assert up.exit_code == 0, up.output
        with psycopg.connect(url.output.strip()) as c:
            assert c.execute("SELECT count(*) FROM pgvision.models").fetchone()[0] == 0
            tuned = {s.name: s.value for s in tuning.settings_for(tuning.this_machine())}
            assert c.execute("SHOW maintenance_work_mem").fetchone()[0] == tuned["maintenance_work_mem"]
        cur = runner.invoke(main, ["db", "current"], env=env)
        assert "(head)" in cur.output  # at head, whatever its revision id
        assert "running:        yes" in runner.invoke(main, ["db", "status"], env=env).output
    finally:
        stop = runner.invoke(main, ["db", "stop"], env=env)
    assert stop.exit_code == 0
    assert "running:        no" in runner.invoke(main, ["db", "status"], env=env).output


@pytest.fixture(scope="session")
def build_backend(tmp_path_factory) -> dict[str, str]:
    """The environment in which pip finds hatchling, the build backend pyproject.toml names.

    The venv's own hatchling when installed; else hatchling installed by pip into a folder
    of its own (from the package index or pip's cache). The tests that need it are skipped,
    saying so, only when neither works: the build tool is then genuinely unavailable. Every
    other build failure is the package's and fails the test (:func:`build_wheel`).
    """
    import importlib.util

    if importlib.util.find_spec("hatchling") is not None:
        return dict(os.environ)
    target = tmp_path_factory.mktemp("build-backend")
    got = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "hatchling>=1.24,<2"],
                         capture_output=True, text=True, check=False)
    if got.returncode != 0:
        pytest.skip("the build backend is unavailable: hatchling is not installed and pip could not install it "
                    f"(no package index or cache?): {got.stderr.strip()[-300:]}")
    return {**os.environ, "PYTHONPATH": str(target)}


def build_wheel(source: Path, out: Path, env: dict[str, str]) -> Path:
    """Build ``source``'s wheel with the given backend (no build isolation, so no download).

    Raises:
        AssertionError: the build failed (a packaging regression), with pip's error.
    """
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(out), str(source)], capture_output=True, text=True, env=env, check=False)
    assert build.returncode == 0, f"the wheel does not build: {build.stderr.strip()[-1500:]}"
    return next(out.glob("pgvision-*.whl"))


def test_a_packaging_regression_fails_the_wheel_build_instead_of_skipping(tmp_path, build_backend):
    """The package's build inputs without sql/ (which the wheel must carry): the build fails,
    and that is a failure, never a skip."""
    source = tmp_path / "pgvision-src"
    for name in ("pyproject.toml", "README.md"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "loader" / "pgvision", source / "loader" / "pgvision",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "alembic", source / "alembic", ignore=shutil.ignore_patterns("__pycache__"))
    with pytest.raises(AssertionError, match=r"(?s)^the wheel does not build: .*Forced include not found: \S*/sql\n"):
        build_wheel(source, tmp_path / "wheels", build_backend)
    shutil.copytree(REPO / "sql", source / "sql")
    assert build_wheel(source, tmp_path / "wheels", build_backend).name == "pgvision-0.1.0-py3-none-any.whl"


@pytest.mark.slow
def test_wheel_carries_migrations_and_sql(tmp_path, server_home, build_backend):
    """A core-only wheel install (no torch, Pillow, dlib) runs `pgvision db upgrade` and
    `pgvision load-vectors` on a .npy file with no checkout around."""
    wheel = build_wheel(REPO, tmp_path / "wheels", build_backend)
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True
    )
    assert (site / "pgvision" / "_alembic" / "versions" / "0001_schema.py").exists()
    assert (site / "pgvision" / "_sql" / "functions" / "search_images.v1.sql").exists()
    assert not (site / "alembic").exists()  # `import alembic` stays the library
    work = tmp_path / "elsewhere"
    work.mkdir()
    blocked = without_extras(tmp_path / "no-extras")  # first on the path
    np.save(work / "v.npy", np.eye(3, 4, dtype=np.float32))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(site)]),
           "PGVISION_DATA_DIR": str(server_home / "pg")}
    env.pop("DATABASE_URL", None)
    code = ("import sys, pgvision.migrate as m; assert str(m.alembic_dir()).startswith(sys.argv[1]), m.alembic_dir(); "
            "from pgvision.cli import main; main(['db', 'upgrade'])")
    try:
        run = subprocess.run([sys.executable, "-c", code, str(site)], cwd=work, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        url = subprocess.run([sys.executable, "-c", "from pgvision.cli import main; main(['db', 'url'])"],
                             cwd=work, env=env, capture_output=True, text=True).stdout.strip()
        load = subprocess.run([sys.executable, "-c", "from pgvision.cli import main; main()", "load-vectors", "v.npy",
                               "--model", "core", "-q"], cwd=work, env=env, capture_output=True, text=True)
        assert load.returncode == 0, load.stderr
        assert load.stdout.startswith("loaded 3, already present 0, skipped 0\n")
        with psycopg.connect(url) as c:
            assert c.execute("SELECT count(*) FROM pg_proc WHERE proname = 'search_images'").fetchone()[0] == 1
            assert c.execute("SELECT count(*) FROM pgvision.image_embeddings").fetchone()[0] == 3
    finally:
        subprocess.run([sys.executable, "-c", "from pgvision.cli import main; main(['db', 'stop'])"],
                       cwd=work, env=env, capture_output=True)


@pytest.mark.parametrize(
    "url, message",
    [
        # a mistyped scheme: libpq reads it as key=value and quotes the whole string
        ("postgresq://app:s3cret@db/app",
         'missing "=" after "postgresq://app:***@db/app" in connection info string'),
        ("postgresql://app:s3cret@[::1", 'end of string reached when looking for matching "]" in IPv6 host address'
                                         ' in URI: "postgresql://app:***@[::1"'),
        ("postgresql://app:s3cret@db/app?nosuchopt=1", 'invalid URI query parameter: "nosuchopt"'),
        # key=value with a space in an unquoted password: libpq quotes a piece of the password
        ("host=db password=s3cret pw", 'missing "=" after "..." in connection info string'),
        ("host=db password='s3cret", "unterminated quoted string in connection info string"),
    ],
)
def test_unparseable_url_is_one_line_without_its_password(url, message):
    """libpq's parse errors quote the string (or a piece of it); none may show the password."""
    from pgvision.errors import BadConnectionString
    from pgvision.server.connection import resolve_read_url, resolve_url

    fix = ": write postgresql://USER:PASSWORD@HOST:PORT/DBNAME or host=HOST dbname=DBNAME user=USER"
    with pytest.raises(BadConnectionString) as err:
        resolve_url(url)
    assert str(err.value) == f"DATABASE_URL is not a libpq connection string ({message}){fix}"
    with pytest.raises(BadConnectionString) as err:
        resolve_read_url(url)
    assert str(err.value) == f"PGVISION_READ_URL is not a libpq connection string ({message}){fix}"
    result = CliRunner().invoke(main, ["similar", "1", "--read-url", url])
    assert result.exit_code == 1 and "s3cret" not in result.output and "pw" not in result.output.replace("PASSWORD", "")
    assert result.output == f"Error: PGVISION_READ_URL is not a libpq connection string ({message}){fix}\n"


def test_unreachable_read_url_names_its_setting(tmp_path):
    result = CliRunner().invoke(main, ["similar", "1", "--read-url", f"postgresql://app:s3cret@/db?host={tmp_path}"])
    assert result.exit_code == 1 and "s3cret" not in result.output
    assert result.output.startswith("Error: cannot connect to postgresql://app:***@/db?host=")
    assert result.output.endswith("; start that server, fix PGVISION_READ_URL, or unset it to read from DATABASE_URL\n")
    assert len(result.output.splitlines()) == 1
