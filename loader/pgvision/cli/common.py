"""Pieces every command shares: the ``--database-url`` option and error reporting."""

from __future__ import annotations

import functools
import json
import math
import os

import click
import psycopg
from alembic.util.exc import CommandError

from pgvision.errors import PgvisionError
from pgvision.ingest.files import FileSkipped


def run_guarded(func):
    """Decorator: turn library and driver errors into ``click.ClickException`` (one line).

    The one place where exceptions become messages: every command is wrapped in it, and
    every library error derives from :class:`pgvision.errors.PgvisionError`.

    A module of an optional extra that is not installed (torch, Pillow, dlib, ...) gives
    one line naming the extra (:func:`pgvision.extras.missing_extra_message`).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ImportError as exc:
            from pgvision.extras import missing_extra_message

            ctx = click.get_current_context(silent=True)
            words = ctx.command_path.split()[1:2] if ctx is not None else []
            message = missing_extra_message(exc, words[0] if words else None)
            if message is None:
                raise
            raise click.ClickException(message) from None
        except FileSkipped as exc:  # a photo named on the command line (identify)
            raise click.ClickException(f"cannot read the photo: {exc}") from None
        except PgvisionError as exc:
            raise click.ClickException(str(exc)) from None
        except psycopg.errors.ReadOnlySqlTransaction:
            from pgvision.server.connection import redact

            url = kwargs.get("database_url") or os.environ.get("DATABASE_URL")
            where = f"the server at {redact(url)}" if url else "the server"
            raise click.ClickException(
                f"{where} is a read-only hot standby: point loads at the primary (DATABASE_URL)"
            ) from None
        except CommandError as exc:  # Alembic: unknown revision, bad range, ...
            raise click.ClickException(f"{exc}: see the revisions with pgvision db history") from None
        except psycopg.Error as exc:
            diag = getattr(exc, "diag", None)
            primary = (diag.message_primary if diag and diag.message_primary else str(exc)).strip()
            hint = diag.message_hint if diag and diag.message_hint else None
            raise click.ClickException(primary + (f" ({hint})" if hint else "")) from None

    return wrapper


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_text(value, indent: int | None = None) -> str:
    """``value`` as strict JSON (RFC 8259): NaN and infinities become ``null``.

    Python's :func:`json.dumps` writes them as the bare tokens ``NaN`` / ``Infinity``, which
    JSON has not and most parsers (``jq``, JavaScript's ``JSON.parse``) reject.
    """
    return json.dumps(_finite(value), indent=indent, allow_nan=False)


def open_database(
    database_url: str | None, *, create: bool = True, autocommit: bool = True, source: str = "DATABASE_URL"
):
    """Connect for a command; the schema must be there, or is created when ``create``.

    Commands that load (``load``, ``load-vectors``, ``faces load``, ``enroll``) run
    ``db upgrade`` themselves on a database without the pgvision schema, so the first
    command on a fresh machine works; commands that only read raise
    :class:`pgvision.errors.SchemaMissing`, whose message names ``pgvision db upgrade``.
    ``source`` names the setting the URL came from in connection errors.
    """
    from pgvision import migrate
    from pgvision.errors import SchemaMissing
    from pgvision.server.connection import connect, require_schema

    conn = connect(database_url, autocommit=autocommit, source=source)
    try:
        require_schema(conn)
    except SchemaMissing:
        conn.close()
        if not create:
            raise
        click.echo("the database has no pgvision schema yet: creating it (pgvision db upgrade)", err=True)
        migrate.upgrade(database_url)
        conn = connect(database_url, autocommit=autocommit)
    return conn
