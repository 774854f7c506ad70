"""``pgvision db user``: login roles for BI tools (parses and reports; see pgvision.server.users)."""

from __future__ import annotations

import sys

import click

from pgvision.cli.common import run_guarded
from pgvision.cli.options import database_url_option


def _one_final_newline_cut(text: str) -> str:
    """A password as piped: ``echo`` adds one newline (``\r\n`` on Windows); spaces are kept."""
    return text.removesuffix("\r\n") if text.endswith("\r\n") else text.removesuffix("\n")


@click.group()
def user() -> None:
    """Create and drop login users for BI tools and applications (over TCP).

    \b
    Example:
      pgvision db start --port 5433
      pgvision db user create metabase --role reader
    """


@user.command()
@click.argument("name")
@click.option("--role", type=click.Choice(["reader", "loader"]), required=True,
              help="reader: search and read; loader: also insert what `pgvision load` writes.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from stdin instead of generating one (kept as read, one final newline cut).")
@click.option("--collection", "collections", multiple=True, metavar="NAME",
              help="A collection the user sees (a loader: also writes); repeat for several; created when absent. "
              "[default: default]")
@database_url_option
@run_guarded
def create(name: str, role: str, password_stdin: bool, collections: tuple[str, ...], database_url: str | None) -> None:
    """Create login user NAME in pgvision_<ROLE>; print its URLs (with the password) once.

    The password (generated unless --password-stdin) is printed here and stored nowhere:
    keep the URL. The user sees only the rows of its collections (row-level security).

    \b
    Example:
      pgvision db user create metabase --role reader
      printf %s "$PW" | pgvision db user create app --role loader --password-stdin
      pgvision db user create acme_bi --role reader --collection acme --collection acme-archive
    """
    from pgvision.server.connection import connect, require_schema, resolve_url
    from pgvision.server.users import create_user

    password = _one_final_newline_cut(sys.stdin.read()) if password_stdin else None
    url = resolve_url(database_url)
    with connect(url, autocommit=True) as conn:
        require_schema(conn)
        new = create_user(conn, url, name, role, password, collections or ("default",))
    click.echo(f"user {new.name} created in pgvision_{role}, collections {', '.join(collections or ('default',))}; "
               "its password is shown once, below", err=True)
    click.echo(f"url:  {new.url}")
    click.echo(f"jdbc: {new.jdbc_url}")


@user.command()
@click.argument("name")
@database_url_option
@run_guarded
def drop(name: str, database_url: str | None) -> None:
    """Drop login user NAME.

    \b
    Example:
      pgvision db user drop metabase
    """
    from pgvision.server.connection import connect
    from pgvision.server.users import drop_user

    with connect(database_url, autocommit=True) as conn:
        drop_user(conn, name)
    click.echo(f"user {name} dropped", err=True)
