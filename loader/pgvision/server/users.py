"""Login roles for BI tools and applications: ``pgvision db user create|drop``.

A user is a PostgreSQL ``LOGIN`` role that is a member of ``pgvision_reader`` (search
functions, views, SELECT on the tables) or ``pgvision_loader`` (what ``pgvision load``
writes); see sql/roles.v1.sql. Its password is generated with :func:`secrets.token_urlsafe`
(32 bytes, 43 URL-safe characters) unless given. It never reaches the server: libpq
(``PQencryptPasswordConn``, through psycopg) computes its SCRAM-SHA-256 verifier (RFC 5802,
RFC 7677) here and ``CREATE ROLE`` gets the verifier, so a statement the server logs (an
error, ``log_statement``) holds no password. The password is returned to the caller once and
stored nowhere else. A user sees (and a loader writes) only the rows of the
collections granted to it (``pgvision.collection_grants``, enforced by row-level security;
docs/collections.md): ``default`` unless others are named.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from pgvision.errors import PgvisionError
from pgvision.tenancy.collection import DEFAULT_COLLECTION, check_collection_name, grant_collections

ROLES = {"reader": "pgvision_reader", "loader": "pgvision_loader"}


class UserError(PgvisionError):
    """A user name, role or server setting that ``db user`` cannot work with."""


#: PostgreSQL's longest identifier, bytes (NAMEDATALEN - 1): longer names are cut silently.
MAX_NAME_BYTES = 63


def check_name(name: str) -> None:
    """Refuse a role name PostgreSQL would refuse or change, before any SQL is sent.

    Raises:
        UserError: empty, over 63 bytes (PostgreSQL would truncate it), or starting with
            ``pg_`` (reserved for system roles).
    """
    if not name.strip():
        raise UserError("the user name is empty: give one, e.g. pgvision db user create metabase --role reader")
    size = len(name.encode())
    if size > MAX_NAME_BYTES:
        raise UserError(f"user name {name[:20]!r}... is {size} bytes: PostgreSQL keeps at most {MAX_NAME_BYTES}; "
                        "give a shorter one")
    if name.lower().startswith("pg_"):
        raise UserError(f"user name {name!r} starts with pg_, which PostgreSQL reserves for its own roles: "
                        "give another one")


def scram_verifier(conn: psycopg.Connection, name: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of ``password`` (``SCRAM-SHA-256$<iterations>:<salt>$...``),
    computed by libpq on this machine (``PQencryptPasswordConn``)."""
    return conn.pgconn.encrypt_password(password.encode(), name.encode(), b"scram-sha-256").decode()


@dataclass(frozen=True)
class NewUser:
    """A created login role and how to connect as it (the only copy of its password)."""

    name: str
    password: str
    host: str
    port: int
    database: str

    @property
    def url(self) -> str:
        """libpq URL, e.g. ``postgresql://metabase:PW@127.0.0.1:5433/pgvision``."""
        return (f"postgresql://{quote(self.name, safe='')}:{quote(self.password, safe='')}"
                f"@{self._host()}:{self.port}/{quote(self.database, safe='')}")

    @property
    def jdbc_url(self) -> str:
        """JDBC URL (PostgreSQL JDBC driver), e.g. ``jdbc:postgresql://127.0.0.1:5433/pgvision?user=..&password=..``."""
        return (f"jdbc:postgresql://{self._host()}:{self.port}/{quote(self.database, safe='')}"
                f"?user={quote(self.name, safe='')}&password={quote(self.password, safe='')}")

    def _host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def tcp_endpoint(conn: psycopg.Connection, database_url: str) -> tuple[str, int]:
    """(host, port) that TCP clients use for the server behind ``conn``.

    The URL's host and port when it is a TCP URL; otherwise the server's
    ``listen_addresses`` (a wildcard shown as 127.0.0.1) and ``port``.

    Raises:
        UserError: the server listens on a Unix socket only.
    """
    params = conninfo_to_dict(database_url)
    host = params.get("host") or params.get("hostaddr") or ""
    port = int(conn.execute("SELECT current_setting('port')").fetchone()[0])
    if host and not host.startswith("/"):
        return host.split(",")[0], int(str(params.get("port") or port).split(",")[0])
    listen = conn.execute("SELECT current_setting('listen_addresses')").fetchone()[0].split(",")[0].strip()
    if not listen:
        raise UserError(
            "the server listens on a Unix socket only, so a BI tool cannot reach it: "
            "pgvision db start --port 5433 opens TCP (password required) on 127.0.0.1"
        )
    return ("127.0.0.1" if listen in ("*", "0.0.0.0", "::") else listen), port


def create_user(conn: psycopg.Connection, database_url: str, name: str, role: str,
                password: str | None = None, collections: Sequence[str] = (DEFAULT_COLLECTION,)) -> NewUser:
    """Create login role ``name``, member of ``pgvision_<role>``, and return how to connect.

    Args:
        conn: a connection with CREATEROLE (the embedded server's ``postgres``).
        database_url: the URL ``conn`` was opened with (its host/port go into the URLs).
        name: the role's name (any PostgreSQL identifier up to 63 bytes, not ``pg_...``;
            quoted, never interpolated).
        role: ``reader`` or ``loader``.
        password: the password, used as given (spaces kept); default a new
            :func:`secrets.token_urlsafe` of 32 bytes. Only its SCRAM verifier is sent.
        collections: the collections it may see (a loader: also write), created when
            absent; default ``default``. Role and grants are made in one transaction.

    Raises:
        UserError: bad name (:func:`check_name`), unknown role, empty password, the name is
            taken, or no TCP listener.
        pgvision.tenancy.collection.CollectionError: a collection name is empty or too long.
    """
    check_name(name)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not collections:
        raise UserError("a user needs at least one collection: pass --collection NAME (default: default)")
    for collection in collections:
        check_collection_name(collection)
    if password is not None and not password.strip():
        raise UserError("the password read from stdin is empty: pipe a password, or leave --password-stdin out")
    host, port = tcp_endpoint(conn, database_url)
    if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
        raise UserError(f"role {name!r} exists already: pick another name, or pgvision db user drop {name}")
    password = password if password is not None else secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
            sql.Identifier(name), sql.Literal(scram_verifier(conn, name, password)), sql.Identifier(ROLES[role])))
        grant_collections(conn, name, collections)
    if not conn.autocommit:
        conn.commit()
    database = conn.execute("SELECT current_database()").fetchone()[0]
    return NewUser(name, password, host, port, database)


def drop_user(conn: psycopg.Connection, name: str) -> None:
    """Drop login role ``name`` (one made by :func:`create_user`).

    Raises:
        UserError: no such role, or it is not a login member of a pgvision role.
    """
    row = conn.execute(
        "SELECT r.rolcanlogin, EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
        "WHERE m.member = r.oid AND g.rolname IN ('pgvision_reader', 'pgvision_loader')) "
        "FROM pg_roles r WHERE r.rolname = %s", (name,)).fetchone()
    if row is None:
        raise UserError(f"no role {name!r}: the users are listed by \\du in pgvision db psql")
    if not (row[0] and row[1]):
        raise UserError(f"role {name!r} is not a pgvision user (a login member of pgvision_reader/loader): "
                        "drop it yourself with DROP ROLE")
    with conn.transaction():
        # Its grants go with it (a later role of the same name must not inherit them).
        conn.execute("DELETE FROM pgvision.collection_grants g USING pg_roles r "
                     "WHERE r.oid = g.role::oid AND r.rolname = %s", (name,))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))
    if not conn.autocommit:
        conn.commit()
