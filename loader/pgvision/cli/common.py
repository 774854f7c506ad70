"""Pieces every command shares: the ``--database-url`` option and error reporting."""

from __future__ import annotations

import functools

import click
import psycopg

from pgvision.errors import PgvisionError

database_url_option = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="PostgreSQL (with pgvector >= 0.8) to use, e.g. postgresql://user:pw@host/db. "
    "[env: DATABASE_URL; default: the embedded server]",
)


def run_guarded(func):
    """Decorator: turn library and driver errors into ``click.ClickException`` (one line)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except PgvisionError as exc:
            raise click.ClickException(str(exc)) from None
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            primary = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
            hint = diag.message_hint if diag and diag.message_hint else None
            raise click.ClickException(primary + (f" ({hint})" if hint else "")) from None

    return wrapper
