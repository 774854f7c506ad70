"""Where the database is: ``--database-url`` / ``DATABASE_URL``, else the embedded server.

Every command connects through :func:`connect`, which turns a refused connection or a
server without pgvector into one line that names the URL tried and the fix.
"""

from __future__ import annotations

import os
import re

import psycopg

from pgvision.errors import (
    BadConnectionString,
    DatabaseUnreachable,
    ExtensionMissing,
    SchemaMissing,
)

#: Oldest pgvector with iterative index scans (``hnsw.iterative_scan``), which the
#: filtered search functions rely on (pgvector CHANGELOG, 0.8.0).
MIN_PGVECTOR = (0, 8, 0)


def resolve_url(database_url: str | None = None) -> str:
    """Return the URL to use: the argument, ``$DATABASE_URL``, or the embedded server's.

    The embedded server is started on demand (see :mod:`pgvision.server.embedded`).
    """
    url = database_url or os.environ.get("DATABASE_URL")
    if url:
        return check_conninfo(url, "DATABASE_URL")
    from pgvision.server import embedded

    return embedded.start()


def resolve_read_url(read_url: str | None = None, database_url: str | None = None) -> str:
    """Return the URL for reads: ``read_url``, ``$PGVISION_READ_URL``, else :func:`resolve_url`.

    A read URL may name a hot standby or several servers at once (libpq multi-host URL with
    ``target_session_attrs=prefer-standby&load_balance_hosts=random``); see docs/scale-out.md.
    Loads never use it: they go to ``database_url`` (the primary).
    """
    url = read_url or os.environ.get("PGVISION_READ_URL")
    return check_conninfo(url, "PGVISION_READ_URL") if url else resolve_url(database_url)


def read_url_source(read_url: str | None = None) -> str:
    """The setting :func:`resolve_read_url` takes its URL from, for messages."""
    return "PGVISION_READ_URL" if read_url or os.environ.get("PGVISION_READ_URL") else "DATABASE_URL"


def check_conninfo(url: str, source: str = "DATABASE_URL") -> str:
    """Return ``url`` when libpq can parse it; else raise one line that shows none of it
    beyond what :func:`redact` shows.

    libpq's parse errors quote the string or a piece of it (``missing "=" after
    "postgresq://app:s3cret@db/app" in connection info string`` for a mistyped scheme), and a
    key=value string libpq cannot parse cannot be relied on to say where its password is:
    quoted pieces are kept only where they show nothing :func:`redact` would hide (pieces of
    a URI found in its redacted form, one-character syntax such as ``"="``), others become
    ``"..."``.

    Raises:
        BadConnectionString: not a libpq URL or key=value string (``source`` names where it
            came from: ``DATABASE_URL`` or ``PGVISION_READ_URL``, or their options).
    """
    from psycopg.conninfo import conninfo_to_dict

    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        shown = redact(url)
        # A URI's password has a known place (user:PASSWORD@, ?password=), which redact masks;
        # a key=value string libpq cannot tokenise has none: there only libpq's one-character
        # syntax pieces ("=", "]") are kept.
        uri = "://" in url

        def piece(m: re.Match) -> str:
            text = m.group(1)
            if len(text) <= 1 or (uri and text in shown):
                return m.group(0)
            return f'"{shown}"' if uri and text == url else '"..."'

        detail = re.sub(r'"([^"]*)"', piece, " ".join(str(exc).split()))
        raise BadConnectionString(
            f"{source} is not a libpq connection string ({detail}): write postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
            " or host=HOST dbname=DBNAME user=USER"
        ) from None
    return url


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


def connect(
    database_url: str | None = None, *, autocommit: bool = False, source: str = "DATABASE_URL"
) -> psycopg.Connection:
    """Open a psycopg connection with pgvector's types registered.

    Args:
        database_url: libpq URL; ``None`` means ``$DATABASE_URL`` or the embedded server.
        autocommit: passed to psycopg (index builds with CONCURRENTLY need it).
        source: the setting the URL came from, named in the errors (``DATABASE_URL`` or
            ``PGVISION_READ_URL``, see :func:`read_url_source`).

    Raises:
        DatabaseUnreachable: the server did not answer; the message names the URL.
        BadConnectionString: the URL is not a libpq connection string.
        ExtensionMissing: pgvector is not installed on the server, or older than 0.8.
    """
    url = resolve_url(database_url)
    try:
        conn = psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__  # libpq's lines, tabs and all, as one
        unset = (
            "read from DATABASE_URL" if source == "PGVISION_READ_URL" else "use the embedded server (pgvision db start)"
        )
        from psycopg.conninfo import conninfo_to_dict

        if "password" in reason and not conninfo_to_dict(url).get("password"):
            raise DatabaseUnreachable(
                f"cannot connect to {redact(url)}: {reason}; over TCP the server takes login users with a password: "
                "create one on the primary (pgvision db user create NAME --role reader; replicas get it too) and "
                f"put the URL it prints in {source}, or use the Unix-socket URL (pgvision db replica list)"
            ) from None
        raise DatabaseUnreachable(
            f"cannot connect to {redact(url)}: {reason}; start that server, fix {source}, or unset it to {unset}"
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


def lost_connection(exc: Exception, loaded: int, remaining: int) -> Exception:
    """The error for a connection lost mid-load: what is committed, what a rerun loads.

    A server-side refusal that psycopg files under ``OperationalError`` (e.g. a value too
    long for an index) is returned unchanged: a rerun would fail the same way.
    """
    if not connection_lost(exc):
        return exc
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnreachable(
        f"lost the database connection during the load ({reason}); {loaded} images of this run are "
        f"committed and safe, {remaining} are not loaded yet: rerun the same command to load the rest"
    )
