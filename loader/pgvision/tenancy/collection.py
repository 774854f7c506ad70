"""A session's collection, and collections granted to roles.

Every row of images, faces, identities, embeddings, face scans, identity templates and
calibrations belongs to one collection (``pgvision.collections``). Row-level security shows
a role only the rows of collections granted to it or to a role whose privileges it has
(``pgvision.collection_grants``; the schema owner and superusers see everything). See
docs/collections.md.
"""

from __future__ import annotations

from typing import Iterable

import psycopg

from pgvision.errors import PgvisionError

#: Name of the collection every row belongs to unless told otherwise (``collection_id`` 1).
DEFAULT_COLLECTION = "default"

#: Longest collection name (the CHECK of ``pgvision.collections.name``).
MAX_NAME_CHARS = 200

#: SQL expression for the session's collection: the ``pgvision.collection_id`` setting that
#: :func:`use_collection` sets, else 1 (``default``). The same expression is the DEFAULT of
#: every ``collection_id`` column (migration 0017); built from fixed text only.
SESSION_COLLECTION_SQL = "(coalesce(nullif(current_setting('pgvision.collection_id', true), ''), '1'))::integer"


class CollectionError(PgvisionError):
    """A collection name that is invalid, unknown, or not granted to the session's role."""


def check_collection_name(name: str) -> str:
    """Return ``name`` if it can name a collection (1 to 200 characters, not only spaces).

    Raises:
        CollectionError: empty, blank or longer than :data:`MAX_NAME_CHARS`.
    """
    if not name or not name.strip() or len(name) > MAX_NAME_CHARS:
        from pgvision.text import display

        shown = display(name[:40]) + ("..." if len(name) > 40 else "")
        raise CollectionError(
            f"a collection name must be 1 to {MAX_NAME_CHARS} characters and not blank, got {len(name)} "
            f"('{shown}'): pass --collection with a name such as default or acme"
        )
    return name


def collection_id(conn: psycopg.Connection, name: str, *, create: bool = False) -> int:
    """The ``collection_id`` of collection ``name`` as this session's role sees it.

    Args:
        conn: a psycopg connection to a database at head.
        name: the collection's name.
        create: create the collection when it does not exist and the role may insert into
            ``pgvision.collections`` (the schema owner; loaders may not).

    Raises:
        CollectionError: bad name; or no such collection visible to this role (the same
            message whether it does not exist or is not granted: a role learns nothing about
            collections it may not see).
    """
    check_collection_name(name)
    row = conn.execute("SELECT collection_id FROM pgvision.collections WHERE name = %s", (name,)).fetchone()
    if (
        row is None
        and create
        and conn.execute("SELECT has_table_privilege('pgvision.collections', 'INSERT')").fetchone()[0]
    ):
        conn.execute("INSERT INTO pgvision.collections (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))
        row = conn.execute("SELECT collection_id FROM pgvision.collections WHERE name = %s", (name,)).fetchone()
    if row is None:
        from pgvision.text import display

        user = conn.execute("SELECT current_user").fetchone()[0]
        raise CollectionError(
            f"collection '{display(name)}' does not exist or is not granted to role {user}: check the name, or ask "
            f"the database owner to grant it (pgvision db user create NAME --collection '{display(name)}')"
        )
    return row[0]


def use_collection(conn: psycopg.Connection, name: str = DEFAULT_COLLECTION, *, create: bool = True) -> int:
    """Make collection ``name`` the one this session writes into; return its id.

    Sets the session's ``pgvision.collection_id`` (``set_config(..., false)``: for the rest
    of the session, on an autocommit connection), which is the default of every
    ``collection_id`` column and what the loader's look-ups by digest or name filter on
    (:data:`SESSION_COLLECTION_SQL`). Creates the collection when absent if the role may
    (see :func:`collection_id`). Writing into a collection not granted to the role fails in
    the server (row-level security), whatever this setting says.

    Raises:
        CollectionError: see :func:`collection_id`.
    """
    cid = collection_id(conn, name, create=create)
    conn.execute("SELECT set_config('pgvision.collection_id', %s, false)", (str(cid),))
    return cid


def grant_collections(conn: psycopg.Connection, role: str, names: Iterable[str]) -> list[int]:
    """Grant collections ``names`` to role ``role`` (creating absent collections); idempotent.

    Args:
        conn: a connection of the schema owner or a superuser (who may write
            ``pgvision.collection_grants``).
        role: an existing role's name, as stored (case kept; never interpolated).
        names: collection names.

    Returns:
        The granted collections' ids, in the order given.

    Raises:
        CollectionError: a bad name, or ``role`` does not exist.
    """
    oid = conn.execute("SELECT oid FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if oid is None:
        raise CollectionError(f"no role {role!r}: create it first (pgvision db user create {role} --role reader)")
    ids = []
    for name in names:
        cid = collection_id(conn, name, create=True)
        conn.execute(
            "INSERT INTO pgvision.collection_grants (role, collection_id) VALUES (%s::oid::regrole, %s) "
            "ON CONFLICT DO NOTHING",
            (oid[0], cid),
        )
        ids.append(cid)
    return ids


def granted_collections(conn: psycopg.Connection, role: str) -> list[str]:
    """Names of the collections granted to ``role`` itself (not through its groups), sorted."""
    return [
        r[0]
        for r in conn.execute(
            "SELECT c.name FROM pgvision.collection_grants g JOIN pgvision.collections c USING (collection_id) "
            "JOIN pg_roles r ON r.oid = g.role::oid WHERE r.rolname = %s ORDER BY c.name",
            (role,),
        )
    ]
