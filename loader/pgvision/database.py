"""Where the database is: ``--database-url`` / ``DATABASE_URL``, else the embedded server.

Every command connects through :func:`connect`, which turns a refused connection or a
server without pgvector into one line that names the URL tried and the fix.
"""

from __future__ import annotations

import os
import re

import psycopg

from pgvision.errors import DatabaseUnreachable, ExtensionMissing, SchemaMissing

#: Oldest pgvector with iterative index scans (``hnsw.iterative_scan``), which the
#: filtered search functions rely on (pgvector CHANGELOG, 0.8.0).
MIN_PGVECTOR = (0, 8, 0)


def resolve_url(database_url: str | None = None) -> str:
    """Return the URL to use: the argument, ``$DATABASE_URL``, or the embedded server's.

    The embedded server is started on demand (see :mod:`pgvision.server`).
    """
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        return url
    from pgvision import server

    return server.start()


def resolve_read_url(read_url: str | None = None, database_url: str | None = None) -> str:
    """Return the URL for reads: ``read_url``, ``$PGVISION_READ_URL``, else :func:`resolve_url`.

    A read URL may name a hot standby or several servers at once (libpq multi-host URL with
    ``target_session_attrs=prefer-standby&load_balance_hosts=random``); see docs/scale-out.md.
    Loads never use it: they go to ``database_url`` (the primary).
    """
    return read_url or os.environ.get("PGVISION_READ_URL") or resolve_url(database_url)


def redact(url: str) -> str:
    """Hide the password of a libpq URL for messages: ``postgresql://u:***@h/db``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def connect(database_url: str | None = None, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a psycopg connection with pgvector's types registered.

    Args:
        database_url: libpq URL; ``None`` means ``$DATABASE_URL`` or the embedded server.
        autocommit: passed to psycopg (index builds with CONCURRENTLY need it).

    Raises:
        DatabaseUnreachable: the server did not answer; the message names the URL.
        ExtensionMissing: pgvector is not installed on the server, or older than 0.8.
    """
    url = resolve_url(database_url)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise DatabaseUnreachable(
            f"cannot connect to {redact(url)}: {reason}; start that server, fix DATABASE_URL, "
            "or unset it to use the embedded server (pgvision db start)"
        ) from None
    check_pgvector(conn, url)
    if installed_version(conn) is not None:
        from pgvector.psycopg import register_vector

        register_vector(conn)
    return conn


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def installed_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return row[0] if row else None


def check_pgvector(conn: psycopg.Connection, url: str) -> None:
    """Raise :class:`ExtensionMissing` unless pgvector >= 0.8 is available on the server."""
    row = conn.execute(
        "SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is None:
        conn.close()
        raise ExtensionMissing(
            f"the server at {redact(url)} has no pgvector extension: install it "
            "(Debian/Ubuntu: apt install postgresql-<major>-pgvector; Docker: image pgvector/pgvector:pg17; "
            "managed clouds: enable the 'vector' extension), or unset DATABASE_URL to use the embedded server"
        )
    default_version, installed = row
    version = installed or default_version
    if _parse_version(version) < MIN_PGVECTOR:
        conn.close()
        raise ExtensionMissing(
            f"the server at {redact(url)} has pgvector {version} but pgvision needs >= 0.8.0 "
            "(iterative index scans): upgrade the package, then ALTER EXTENSION vector UPDATE"
        )


def require_schema(conn: psycopg.Connection) -> None:
    """Raise :class:`SchemaMissing` when ``pgvision db upgrade`` has not been run."""
    if conn.execute("SELECT to_regclass('pgvision.models')").fetchone()[0] is None:
        raise SchemaMissing("the database has no pgvision schema yet: run pgvision db upgrade")
