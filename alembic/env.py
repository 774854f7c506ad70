"""Alembic environment for pgvision (used by `pgvision db ...` and plain `alembic`).

The database is the URL put in ``config.attributes["pgvision_url"]`` by
``pgvision.migrate``; with plain ``alembic`` it is ``$DATABASE_URL``, else the embedded
server. pgvector >= 0.8 is checked before anything is created, and every migration of a
run shares one transaction: a failure leaves nothing half-created.
"""

from logging.config import fileConfig

import psycopg
from alembic import context
from sqlalchemy import create_engine, pool

from pgvision.migrate import VERSION_TABLE
from pgvision.server.connection import connect, resolve_url

#: First key of the advisory lock that serialises migrations ('pgvm').
MIGRATION_LOCK_CLASS = 0x7067766D

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)


def run_migrations_offline() -> None:
    context.configure(
        url="postgresql+psycopg://",
        literal_binds=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.attributes.get("pgvision_url") or resolve_url()
    connect(url).close()  # one-line errors for an unreachable server or a missing pgvector
    # psycopg opens the connection itself: any libpq URL or key=value string works,
    # including Unix-socket URLs such as the embedded server's.
    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, version_table=VERSION_TABLE)
        with context.begin_transaction():
            # Concurrent `db upgrade` runs take turns: the second waits here, then finds the
            # version table at head and has nothing to do (it used to fail with a
            # UniqueViolation on pgvision_alembic_version). A session lock, not an xact one:
            # a deployment migration may commit mid-run (add_model's autocommit block).
            # Released when the connection closes (NullPool).
            connection.exec_driver_sql("SELECT pg_advisory_lock(%s, 0)" % MIGRATION_LOCK_CLASS)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
