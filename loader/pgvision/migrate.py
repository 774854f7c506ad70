"""Alembic, wired for pgvision: where the migrations and SQL files are, and how to run them.

From a checkout the migrations are ``alembic/`` and the SQL API ``sql/`` at the top of the
repository (so plain ``alembic upgrade head`` works there); in an installed wheel they are
``pgvision/_alembic`` and ``pgvision/_sql``.
"""

from __future__ import annotations

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


def apply_sql(op, relative: str) -> None:
    """Apply one SQL API file inside a migration (``op`` is ``alembic.op``).

    The file runs with ``search_path`` set to ``pgvision``, the schema holding pgvector,
    ``pg_catalog`` and ``pg_temp`` last, so that functions declared with
    ``SET search_path FROM CURRENT`` keep that fixed path whatever the caller's path is
    (PostgreSQL docs, "Writing SECURITY DEFINER Functions Safely").
    """
    # The psycopg cursor under SQLAlchemy, called without parameters: the file reaches the
    # server as written (no ':name' bind parsing, no '%' placeholders), in the migration's
    # transaction.
    cur = op.get_bind().connection.dbapi_connection.cursor()
    cur.execute(
        "SELECT set_config('search_path', format('pgvision, %I, pg_catalog, pg_temp', n.nspname), true) "
        "FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
    )
    cur.execute(sql_file(relative))
    cur.execute("RESET search_path")


def make_config(database_url: str | None, extra_version_dirs: list[Path] | None = None) -> Config:
    """Alembic Config for the pgvision migrations.

    Args:
        database_url: libpq URL; ``None`` means ``$DATABASE_URL`` or the embedded server.
        extra_version_dirs: a deployment's own migration folders (e.g. to add a model's
            index, see README "Adding a model in your own migration").
    """
    from pgvision.database import resolve_url

    cfg = Config()
    cfg.set_main_option("script_location", str(alembic_dir()))
    dirs = [alembic_dir() / "versions", *(extra_version_dirs or [])]
    cfg.set_main_option("version_locations", " ".join(str(d) for d in dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["pgvision_url"] = resolve_url(database_url)
    return cfg


def upgrade(database_url: str | None = None, revision: str = "heads", extra_version_dirs=None) -> None:
    """Upgrade the database to ``revision`` (default: every head)."""
    command.upgrade(make_config(database_url, extra_version_dirs), revision)


def downgrade(database_url: str | None, revision: str, extra_version_dirs=None) -> None:
    """Downgrade the database to ``revision`` (``base`` removes everything pgvision made)."""
    command.downgrade(make_config(database_url, extra_version_dirs), revision)


def current(database_url: str | None = None, extra_version_dirs=None) -> None:
    command.current(make_config(database_url, extra_version_dirs), verbose=True)


def history(database_url: str | None = None, extra_version_dirs=None) -> None:
    command.history(make_config(database_url, extra_version_dirs), verbose=True)
