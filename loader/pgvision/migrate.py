"""Alembic, wired for pgvision: where the migrations and SQL files are, and how to run them.

From a checkout the migrations are ``alembic/`` and the SQL API ``sql/`` at the top of the
repository (so plain ``alembic upgrade head`` works there); in an installed wheel they are
``pgvision/_alembic`` and ``pgvision/_sql``.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config

#: Alembic's version table, named so that it does not collide with an application's own.
VERSION_TABLE = "pgvision_alembic_version"

_CHECKOUT = Path(__file__).resolve().parents[2]


def _resource_dir(packaged: str, checkout: str) -> Path:
    installed = Path(str(resources.files("pgvision"))) / packaged
    if installed.is_dir():
        return installed
    return _CHECKOUT / checkout


def alembic_dir() -> Path:
    """Directory holding ``env.py`` and ``versions/``."""
    return _resource_dir("_alembic", "alembic")


def sql_dir() -> Path:
    """Directory holding ``functions/<name>.v<N>.sql`` and ``views/<name>.v<N>.sql``."""
    return _resource_dir("_sql", "sql")


def sql_file(relative: str) -> str:
    """Text of one file of the SQL API, e.g. ``functions/search_images.v1.sql``.

    Raises:
        FileNotFoundError: no such file in the installed or checked-out ``sql/``.
    """
    return (sql_dir() / relative).read_text(encoding="utf-8")


#: Token for pgvector's schema in SQL API files, as in PostgreSQL's own extension scripts
#: (PostgreSQL docs, "Packaging Related Objects into an Extension": ``@extschema:name@``).
#: :func:`apply_sql` replaces it with the quoted name of the schema that holds pgvector.
VECTOR_SCHEMA_TOKEN = "@extschema:vector@"

#: The fixed ``search_path`` of every function written with :data:`VECTOR_SCHEMA_TOKEN`:
#: ``pg_catalog`` first, then pgvision's own schema (writable by its owner only), ``pg_temp``
#: last; pgvector's schema (often ``public``, sometimes writable by others) is *not* on it.
#: Its types, operators and functions are reached by qualified names
#: (``@extschema:vector@.vector``, ``OPERATOR(@extschema:vector@.<=>)``), so an object that
#: another role creates in that schema can never shadow a call (PostgreSQL docs, "Writing
#: SECURITY DEFINER Functions Safely" and "Security Considerations for Extension Scripts";
#: CVE-2018-1058).
SECURE_SEARCH_PATH = "pg_catalog, pgvision, pg_temp"


#: Released files that predate :data:`VECTOR_SCHEMA_TOKEN` and name pgvector's types and
#: operators unqualified: they run with the path they were released with. Every other file
#: runs with :data:`SECURE_SEARCH_PATH` whether or not it names pgvector, so a new function
#: declared ``SET search_path FROM CURRENT`` can never capture a path with ``public`` in it.
LEGACY_PATH_FILES = frozenset(
    f"{name}.sql"
    for name in (
        "_check_query.v1", "_identify.v1", "_identify.v2", "_nearest.v1", "_resolve_model.v1", "_similarity.v1",
        "identify.v1", "identify.v2", "identify_face.v1", "identify_face.v2", "recall_at_k.v1", "search_images.v1",
        "similar_images.v1", "gallery.v1", "labels.v1", "model_stats.v1", "model_stats.v2", "model_stats.v3",
        "roles.v1", "roles.v2", "roles_drop.v1", "roles_drop.v2",
    )
)


def vector_schema(cursor) -> str:
    """Name of the schema holding pgvector (a DB-API cursor of the migration's connection)."""
    cursor.execute(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    )
    return cursor.fetchone()[0]


def apply_sql(op, relative: str) -> None:
    """Apply one SQL API file inside a migration (``op`` is ``alembic.op``).

    A file that names pgvector's schema with :data:`VECTOR_SCHEMA_TOKEN` gets it replaced
    by the quoted schema name and runs with ``search_path`` = :data:`SECURE_SEARCH_PATH`, so
    that functions declared with ``SET search_path FROM CURRENT`` keep that fixed path
    whatever the caller's path is. Files released before the token existed (v1 files of
    0001/0002, never edited) run with the path they were released with
    (``pgvision, <pgvector schema>, pg_catalog, pg_temp``); migration 0003 replaces every
    one of them.
    """
    # The psycopg cursor under SQLAlchemy, called without parameters: the file reaches the
    # server as written (no ':name' bind parsing, no '%' placeholders), in the migration's
    # transaction.
    from psycopg import sql

    cur = op.get_bind().connection.dbapi_connection.cursor()
    schema = vector_schema(cur)
    text = sql_file(relative)
    if VECTOR_SCHEMA_TOKEN in text or Path(relative).name not in LEGACY_PATH_FILES:
        quoted = sql.Identifier(schema).as_string(cur.connection)
        text = text.replace(VECTOR_SCHEMA_TOKEN, quoted)
        cur.execute("SELECT set_config('search_path', %s, true)", (SECURE_SEARCH_PATH,))
    else:
        cur.execute(
            "SELECT set_config('search_path', format('pgvision, %%I, pg_catalog, pg_temp', %s::text), true)",
            (schema,),
        )
    cur.execute(text)
    cur.execute("RESET search_path")


def make_config(database_url: str | None, extra_version_dirs: list[Path] | None = None) -> Config:
    """Alembic Config for the pgvision migrations.

    Args:
        database_url: libpq URL; ``None`` means ``$DATABASE_URL`` or the embedded server.
        extra_version_dirs: a deployment's own migration folders (e.g. to add a model's
            index, see README "Adding a model in your own migration").
    """
    from pgvision.server.connection import resolve_url

    cfg = Config(stdout=sys.stdout)  # Alembic's default is the sys.stdout of import time
    cfg.set_main_option("script_location", str(alembic_dir()))
    dirs = [alembic_dir() / "versions", *(extra_version_dirs or [])]
    cfg.set_main_option("version_locations", " ".join(str(d) for d in dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["pgvision_url"] = resolve_url(database_url)
    return cfg


def _unwrapped(run, *args) -> None:
    """Run an Alembic command; a server error comes out as the driver's (psycopg) error.

    SQLAlchemy wraps it in ``DBAPIError`` with the statement attached (a multi-line message);
    callers and ``cli.common.run_guarded`` deal with psycopg errors, as everywhere else.
    """
    import psycopg
    from sqlalchemy.exc import DBAPIError

    from pgvision.errors import ExtensionMissing

    try:
        run(*args)
    except DBAPIError as exc:
        orig = exc.orig
        if isinstance(orig, psycopg.errors.InsufficientPrivilege) and "extension" in str(orig):
            raise ExtensionMissing(
                "pgvector is not installed in this database and this role may not install it "
                f"({str(orig).splitlines()[0]}): ask a superuser to run CREATE EXTENSION vector in it, "
                "then rerun"
            ) from None
        if isinstance(orig, psycopg.Error):
            raise orig from None
        raise


def upgrade(database_url: str | None = None, revision: str = "heads", extra_version_dirs=None) -> None:
    """Upgrade the database to ``revision`` (default: every head).

    Concurrent upgrades of one database take turns (an advisory lock in ``alembic/env.py``).

    Raises:
        psycopg.Error: a statement failed; nothing of this run stays (one transaction).
        pgvision.errors.ExtensionMissing: pgvector is not installed and this role cannot install it.
        alembic.util.exc.CommandError: unknown revision.
    """
    _unwrapped(command.upgrade, make_config(database_url, extra_version_dirs), revision)


def downgrade(database_url: str | None, revision: str, extra_version_dirs=None) -> None:
    """Downgrade the database to ``revision`` (``base`` removes everything pgvision made)."""
    _unwrapped(command.downgrade, make_config(database_url, extra_version_dirs), revision)


def current(database_url: str | None = None, extra_version_dirs=None) -> None:
    command.current(make_config(database_url, extra_version_dirs), verbose=False)


def history(database_url: str | None = None, extra_version_dirs=None) -> None:
    command.history(make_config(database_url, extra_version_dirs), verbose=True)


def add_model(op, spec, *, method: str = "hnsw", m: int = 16, ef_construction: int = 64,
              lists: int | None = None, ef_search: int = 40, quantization: str = "none") -> None:
    """Register a model and build its ANN index, inside a deployment's own migration.

    Use it in an Alembic revision of your own (see README, "Adding a model in your own
    migration"); run it with ``pgvision db upgrade --versions-dir DIR``. The model row is
    committed first, then the index is built with ``CREATE INDEX CONCURRENTLY`` in an
    autocommit block, so loads of other models are not blocked while it builds.

    Args:
        op: ``alembic.op``.
        spec: a :class:`pgvision.registry.ModelSpec`.
        method: ``hnsw`` (default), ``ivfflat`` (built once rows exist) or ``none``.
        m, ef_construction: HNSW parameters (pgvector defaults 16 and 64).
        lists: IVFFlat lists; default from the row count when it is built.
        ef_search: the model's default HNSW search list (``search_images`` uses it).
        quantization: index expression: ``none`` (full precision, default), ``halfvec`` or
            ``binary`` (re-ranked), see :mod:`pgvision.index.ddl`; other than ``none``, the
            deployment migration must have ``depends_on = "0006"``.
    """
    from pgvision.index.ddl import ensure_index
    from pgvision.registry import register_model

    conn = op.get_bind().connection.dbapi_connection
    model_id = register_model(conn, spec)
    conn.execute(
        "UPDATE pgvision.models SET index_method = %s, hnsw_m = %s, hnsw_ef_construction = %s, "
        "ivfflat_lists = %s, ef_search = %s WHERE model_id = %s",
        (method, m, ef_construction, lists, ef_search, model_id),
    )
    if quantization != "none":  # the column exists from migration 0006 on
        conn.execute("UPDATE pgvision.models SET quantization = %s WHERE model_id = %s", (quantization, model_id))
    with op.get_context().autocommit_block():
        ensure_index(op.get_bind().connection.dbapi_connection, model_id)


def drop_model(op, name: str) -> None:
    """Undo :func:`add_model`: drop the model's index, then its row and embeddings."""
    from pgvision.index.ddl import drop_index
    from pgvision.registry import get_model

    conn = op.get_bind().connection.dbapi_connection
    model = get_model(conn, name)
    drop_index(conn, model)
    conn.execute("DELETE FROM pgvision.models WHERE model_id = %s", (model["model_id"],))
