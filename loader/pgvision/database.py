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
    """Hide the password of a connection string for messages, in every form libpq takes.

    ``postgresql://u:secret@h/db`` -> ``postgresql://u:***@h/db``;
    ``postgresql://u@h/db?password=secret`` -> ``...?password=***``;
    ``host=h password=secret`` -> ``host=h password=***``. The password as libpq reads it
    (:func:`psycopg.conninfo.conninfo_to_dict`) is then masked wherever it still appears.
    """
    from psycopg.conninfo import conninfo_to_dict

    text = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    text = re.sub(r"([?&]password=)[^&#]*", r"\1***", text, flags=re.IGNORECASE)
    if "://" not in url:  # key=value form
        text = re.sub(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text, flags=re.IGNORECASE)
    try:
        password = conninfo_to_dict(url).get("password")
    except psycopg.ProgrammingError:  # not a valid conninfo: the patterns above are all we have
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text


#: SQLSTATEs of a connection that is gone: class 08 (connection exception) and the server
#: shutting down or terminating the session (57P01 admin_shutdown, 57P02 crash_shutdown,
#: 57P03 cannot_connect_now).
_CONNECTION_GONE = ("57P01", "57P02", "57P03")


def connection_lost(exc: BaseException) -> bool:
    """True when ``exc`` means the connection is gone, not that the server refused a value.

    psycopg files some server-side errors under ``OperationalError`` too (e.g.
    ``ProgramLimitExceeded``, 54000, for a value too long for an index): those are answers
    from a live server, and rerunning the same load would fail the same way.
    """
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith("08") or state in _CONNECTION_GONE


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


#: Tables whose rows :func:`row_counts` reports (what a downgrade to base would delete).
COUNTED_TABLES = ("images", "image_embeddings", "faces", "face_embeddings", "identities", "models")


def row_counts(database_url: str | None) -> dict[str, int]:
    """``{table: rows}`` of the pgvision tables; empty when the schema is absent."""
    from psycopg import sql

    with connect(database_url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('pgvision.models')").fetchone()[0] is None:
            return {}
        return {
            table: conn.execute(
                sql.SQL("SELECT count(*) FROM pgvision.{}").format(sql.Identifier(table))
            ).fetchone()[0]
            for table in COUNTED_TABLES
        }


def require_schema(conn: psycopg.Connection) -> None:
    """Raise :class:`SchemaMissing` when ``pgvision db upgrade`` has not been run."""
    if conn.execute("SELECT to_regclass('pgvision.models')").fetchone()[0] is None:
        raise SchemaMissing("the database has no pgvision schema yet: run pgvision db upgrade")
