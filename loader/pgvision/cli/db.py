"""``pgvision db``: the database itself: migrations and the embedded server."""

from __future__ import annotations

from pathlib import Path

import click

from pgvision import migrate, server
from pgvision.cli.common import database_url_option, run_guarded

versions_option = click.option(
    "--versions-dir",
    "versions_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="PGVISION_VERSIONS_DIRS",
    help="A deployment's own Alembic versions folder, run together with pgvision's "
    "(e.g. a migration that adds a model's index). Repeatable. [env: PGVISION_VERSIONS_DIRS]",
)


@click.group()
def db() -> None:
    """Create and upgrade the schema; start, stop and locate the embedded server.

    \b
    Example:
      pgvision db upgrade
      psql "$(pgvision db url)"
    """


@db.command()
@click.argument("revision", default="heads")
@database_url_option
@versions_option
@run_guarded
def upgrade(revision: str, database_url: str | None, versions_dirs: tuple[Path, ...]) -> None:
    """Create or upgrade everything (extension, schema, tables, SQL API, roles) to REVISION.

    REVISION defaults to every head. All migrations of one run share a transaction: a failure
    leaves the database as it was.

    \b
    Example:
      pgvision db upgrade
      DATABASE_URL=postgresql://app@db/app pgvision db upgrade
    """
    migrate.upgrade(database_url, revision, list(versions_dirs))
    click.echo(f"database upgraded to {revision}", err=True)


@db.command()
@click.argument("revision")
@database_url_option
@versions_option
@run_guarded
def downgrade(revision: str, database_url: str | None, versions_dirs: tuple[Path, ...]) -> None:
    """Downgrade to REVISION; `base` removes the pgvision schema and its data.

    \b
    Example:
      pgvision db downgrade base
    """
    migrate.downgrade(database_url, revision, list(versions_dirs))
    click.echo(f"database downgraded to {revision}", err=True)


@db.command()
@database_url_option
@versions_option
@run_guarded
def current(database_url: str | None, versions_dirs: tuple[Path, ...]) -> None:
    """Show the revision the database is at.

    \b
    Example:
      pgvision db current
    """
    migrate.current(database_url, list(versions_dirs))


@db.command()
@versions_option
@run_guarded
def history(versions_dirs: tuple[Path, ...]) -> None:
    """List the migrations, newest first.

    \b
    Example:
      pgvision db history
    """
    migrate.history(None, list(versions_dirs))


@db.command()
@run_guarded
def start() -> None:
    """Start the embedded server (initialised on first use) and print its URL.

    \b
    Example:
      pgvision db start
    """
    click.echo(server.start())


@db.command()
@run_guarded
def stop() -> None:
    """Stop the embedded server.

    \b
    Example:
      pgvision db stop
    """
    click.echo("stopped" if server.stop() else f"not running ({server.data_dir()})", err=True)


@db.command()
@run_guarded
def status() -> None:
    """Show whether the embedded server is initialised and running, and where.

    \b
    Example:
      pgvision db status
    """
    st = server.status()
    click.echo(f"data directory: {st.data_dir}")
    click.echo(f"initialised:    {'yes' if st.initialised else 'no'}")
    click.echo(f"running:        {'yes, pid ' + str(st.pid) if st.running else 'no'}")
    if st.url:
        click.echo(f"url:            {st.url}")


@db.command()
@run_guarded
def url() -> None:
    """Print the embedded server's connection URL (starting it if needed), for psql or BI tools.

    \b
    Example:
      psql "$(pgvision db url)" -c "SELECT * FROM pgvision.model_stats"
    """
    click.echo(server.start())


@db.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@database_url_option
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@run_guarded
def psql(database_url: str | None, psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (the psql shipped with the embedded server, or yours).

    Extra arguments go to psql unchanged.

    \b
    Example:
      pgvision db psql -c "SELECT * FROM pgvision.model_stats"
    """
    import os
    import shutil

    from pgvision.database import resolve_url

    url = resolve_url(database_url)
    exe = server.psql_path() or shutil.which("psql")
    if exe is None:
        raise click.ClickException("no psql found: install the PostgreSQL client (apt install postgresql-client)")
    os.execv(exe, [exe, url, *psql_args])


@db.command()
@click.argument("model")
@click.option("--method", type=click.Choice(["hnsw", "ivfflat", "none"]), default="hnsw", show_default=True,
              help="ANN index; none = exact scans only.")
@click.option("--m", "m", type=click.IntRange(2, 100), help="HNSW graph degree [default: 16].")
@click.option("--ef-construction", type=click.IntRange(4, 1000), help="HNSW build candidate list [default: 64].")
@click.option("--lists", type=click.IntRange(1, 32768), help="IVFFlat clusters [default: rows/1000].")
@click.option("--probes", type=click.IntRange(1, 32768), help="IVFFlat clusters searched [default: sqrt(lists)].")
@database_url_option
@run_guarded
def index(model: str, method: str, m: int | None, ef_construction: int | None, lists: int | None,
          probes: int | None, database_url: str | None) -> None:
    """(Re)build MODEL's ANN index with another method or parameters.

    The old index is dropped and the new one built CONCURRENTLY (loads go on). Needs the
    table owner's rights.

    \b
    Example:
      pgvision db index efficientnet-lite0 --method ivfflat --lists 100 --probes 10
      pgvision db index efficientnet-lite0 --m 32 --ef-construction 128
    """
    from pgvision.database import connect, require_schema
    from pgvision.indexes import set_index

    with connect(database_url, autocommit=True) as conn:
        require_schema(conn)
        name = set_index(conn, model, method=method, m=m, ef_construction=ef_construction, lists=lists, probes=probes)
    click.echo(f"{model}: {name or 'no index (exact scans)'}", err=True)

from pgvision.cli.replica import replica  # noqa: E402

db.add_command(replica)
