"""A real PostgreSQL with pgvector for every test; never a mock.

Server, in this order (DESIGN.md): ``$PGVISION_TEST_DATABASE_URL`` if set; else a
``pgvector/pgvector`` container through testcontainers when a Docker daemon answers; else
the embedded server in a temporary data directory (what CI uses here).

The schema is migrated once into a template database; each test that asks for
``database_url`` gets a fresh copy (``CREATE DATABASE ... TEMPLATE``, a file copy).
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgvision import migrate
from pgvision.extras import EXTRA_OF_MODULE

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PGVECTOR_IMAGE = "pgvector/pgvector:pg17"

_counter = itertools.count()


def shared_path(*parts: str) -> Path:
    """A path under ../shared; the test is skipped, saying why, when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: this test needs the shared research data beside the repository")
    return path


#: Top-level modules of the extras (pyproject.toml [project.optional-dependencies]).
EXTRAS_MODULES = ("torch", "torchvision", "PIL", "timm", "dlib", "scipy", "matplotlib")


def without_extras(top: Path) -> Path:
    """A folder to put first on ``PYTHONPATH`` so that the extras' modules fail to import.

    Each of :data:`EXTRAS_MODULES` becomes a package whose import raises
    ``ModuleNotFoundError`` (with ``name`` set, as a real absence does): a subprocess then
    behaves like the core install, ``pip install pgvision`` with no extras.
    """
    top.mkdir(parents=True, exist_ok=True)
    for name in EXTRAS_MODULES:
        (top / name).mkdir(exist_ok=True)
        message = f"No module named {name!r}"
        (top / name / "__init__.py").write_text(f"raise ModuleNotFoundError({message!r}, name={name!r})\n")
    return top


class _TestModule(pytest.Module):
    """A test file whose import fails for want of an extra is skipped, saying which, not an error.

    This is what a core install (``pip install pgvision``, no extras) meets: .ci/run runs the
    ``core`` tests there, and pytest imports every test file to find them.
    """

    def collect(self):
        try:
            return super().collect()
        except self.CollectError as exc:
            missing = exc.__cause__
            module = (getattr(missing, "name", None) or "").split(".")[0]
            if not isinstance(missing, ModuleNotFoundError) or module not in EXTRA_OF_MODULE:
                raise
            distribution, extra = EXTRA_OF_MODULE[module]
            raise pytest.skip.Exception(
                f"{self.path.name}: {distribution} is not installed: these tests need pip install 'pgvision[{extra}]'",
                allow_module_level=True,
            ) from None


def pytest_pycollect_makemodule(module_path, parent):
    return _TestModule.from_parent(parent, path=module_path)


def server_dir() -> Path:
    """A fresh directory for an embedded server's data, outside pytest's tmp tree.

    As root the server runs as its own system user, which must traverse the path; pytest
    keeps /tmp/pytest-of-<user> at mode 0700 (and resets it when another pytest starts).
    Whoever calls this removes it: use the :func:`server_home` fixture, or
    :func:`remove_server_dir` in a ``finally``.
    """
    top = Path(tempfile.mkdtemp(prefix="pgvision-test-"))
    os.chmod(top, 0o755)
    return top


def remove_server_dir(top: Path) -> None:
    """Stop every embedded server whose data directory is under ``top``, then delete ``top``."""
    from pgvision.server import embedded

    for version in top.rglob("PG_VERSION"):
        if version.parent.name != "base" and embedded.status(version.parent).running:
            embedded.stop(version.parent)
    shutil.rmtree(top)


@pytest.fixture
def server_home():
    """A directory for a test's own embedded server (see :func:`server_dir`); afterwards its
    servers are stopped and the directory (about 47 MB per server) is removed."""
    top = server_dir()
    try:
        yield top
    finally:
        remove_server_dir(top)


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def server_conninfo():
    """Conninfo of a superuser connection to the test server's maintenance database."""
    url = os.environ.get("PGVISION_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(PGVECTOR_IMAGE, driver=None) as pg:
            yield pg.get_connection_url()
        return
    from pgvision.server import embedded

    top = server_dir()
    data = top / "data"
    # A run stopped with SIGTERM (a CI timeout, `kill`) ends like Ctrl-C, so pytest's
    # teardown still stops this server and removes its folder.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    url = embedded.start(data)
    try:
        yield make_conninfo(url, dbname="postgres")
    finally:
        remove_server_dir(top)


@pytest.fixture(scope="session")
def template_db(server_conninfo):
    """Name of a database migrated to head, used as the template of each test database."""
    name = f"pgvision_template_{os.getpid()}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate.upgrade(make_conninfo(server_conninfo, dbname=name))
    yield name
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _fresh_database(server_conninfo: str, template: str | None):
    name = f"pgvision_test_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            stmt = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(stmt)
    return name


def _drop(server_conninfo: str, name: str) -> None:
    with psycopg.connect(server_conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(server_conninfo, template_db):
    """Conninfo of a fresh database migrated to head (pgvision schema, SQL API, roles)."""
    name = _fresh_database(server_conninfo, template_db)
    yield make_conninfo(server_conninfo, dbname=name)
    _drop(server_conninfo, name)


@pytest.fixture
def empty_database_url(server_conninfo):
    """Conninfo of a fresh database with nothing in it (for migration tests)."""
    name = _fresh_database(server_conninfo, None)
    yield make_conninfo(server_conninfo, dbname=name)
    _drop(server_conninfo, name)


@pytest.fixture
def conn(database_url):
    """A psycopg connection (autocommit, pgvector types registered) to a fresh migrated database."""
    from pgvision.server.connection import connect

    with connect(database_url, autocommit=True) as c:
        yield c
