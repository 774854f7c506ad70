"""``pgvision db replica``: hot-standby streaming replicas of the embedded server.

Parses options and reports; the work is in :mod:`pgvision.server.replicas`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from pgvision.cli.common import run_guarded


@click.group()
def replica() -> None:
    """Add, list, stop and remove read replicas (hot standbys) of the embedded server.

    Searches, similar, identify and the views run on a replica; loads go to the primary.
    For another server (managed, your own), see docs/scale-out.md.

    \b
    Example:
      pgvision db replica add --name r1
      pgvision search query.jpg --read-url "$(pgvision db replica list --urls)"
    """


@replica.command()
@click.option("--name", default="replica1", show_default=True, metavar="NAME",
              help="Replica name, also its replication slot on the primary ([a-z0-9_], up to 63).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="The replica's data directory (absent or empty) [default: <primary data dir>/../replicas/NAME].")
@click.option("--max-rate", metavar="RATE",
              help="Limit the copy's reads of the primary (pg_basebackup --max-rate), e.g. 100M; kB/s without a unit.")
@run_guarded
def add(name: str, data_dir: Path | None, max_rate: str | None) -> None:
    """Create a hot-standby replica of the embedded server (pg_basebackup), start it, print its URL.

    The URL printed is the replica's Unix socket, for this OS user. Over TCP (when the
    primary has a --port) only login users with a password get in: create one on the
    primary with `pgvision db user create`; it is copied to every replica.

    \b
    Example:
      pgvision db replica add --name r1
    """
    from pgvision.server import replicas

    r = replicas.add(name, data_dir, max_rate=max_rate)
    click.echo(f"replica {r.name} streaming from the primary in {r.data_dir}", err=True)
    if r.tcp_url:
        click.echo(f"tcp: {r.tcp_url} (USER: a login user with a password, made on the primary: "
                   "pgvision db user create NAME --role reader)", err=True)
    click.echo(r.url)


@replica.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.option("--urls", is_flag=True,
              help="Print one multi-host URL over the running replicas and the primary "
                   "(prefer-standby, load_balance_hosts=random), for --read-url / PGVISION_READ_URL.")
@run_guarded
def list_(as_json: bool, urls: bool) -> None:
    """List the replicas: name, running, URL, data directory.

    \b
    Example:
      pgvision db replica list
    """
    from pgvision.server import replicas

    rows = replicas.list_replicas()
    if urls:
        click.echo(replicas.read_url())
    elif as_json:
        click.echo(json.dumps([replicas.as_dict(r) for r in rows], indent=2))
    elif not rows:
        click.echo("(no replicas)")
    else:
        for r in rows:
            state = "running" if r.running else ("adding" if r.state == replicas.ADDING else "stopped")
            click.echo(f"{r.name}  {state}  {r.url or '-'}  {r.data_dir}")


@replica.command()
@click.argument("name")
@run_guarded
def start(name: str) -> None:
    """Start the stopped replica NAME and print its URL.

    \b
    Example:
      pgvision db replica start r1
    """
    from pgvision.server import replicas

    r = replicas.start(name)
    click.echo(r.url)


@replica.command()
@click.argument("name")
@run_guarded
def stop(name: str) -> None:
    """Stop the replica NAME (its slot keeps WAL for it until it is started or removed).

    \b
    Example:
      pgvision db replica stop r1
    """
    from pgvision.server import replicas

    click.echo("stopped" if replicas.stop(name) else f"{name} was not running", err=True)


@replica.command()
@click.argument("name")
@run_guarded
def remove(name: str) -> None:
    """Stop the replica NAME, drop its replication slot, delete its data directory.

    Also cleans up a replica whose `add` failed or was killed. A stopped primary is started
    to drop the slot and stopped again.

    \b
    Example:
      pgvision db replica remove r1
    """
    from pgvision.server import replicas

    restarted = replicas.remove(name)
    click.echo(f"removed {name}" + (" (the stopped primary was started to drop its slot, and stopped again)"
                                     if restarted else ""), err=True)
