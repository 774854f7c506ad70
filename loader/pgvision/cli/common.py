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

database_url_option = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="PostgreSQL (with pgvector >= 0.8) to use, e.g. postgresql://user:pw@host/db. "
    "[env: DATABASE_URL; default: the embedded server]",
)

read_url_option = click.option(
    "--read-url",
    envvar="PGVISION_READ_URL",
    metavar="URL",
    help="Server(s) for this read, e.g. a hot-standby replica or a multi-host URL "
    "(host=a,b&target_session_attrs=prefer-standby&load_balance_hosts=random). "
    "[env: PGVISION_READ_URL; default: --database-url]",
)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``.

    Python's ``float()`` accepts ``"nan"`` and ``"inf"``, and click's range check compares
    with ``<`` / ``>``, which NaN never fails: ``--target-recall nan`` or ``--threshold nan``
    would get past the option and into the code (PostgreSQL orders NaN above every number,
    so ``distance <= 'NaN'`` is true: the SQL functions refuse such a threshold, and the
    CLI now refuses it before any work). Every float option of the CLI uses this type.
    """

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


#: An ``image_id``/``face_id`` argument: PostgreSQL ``bigint`` (one-line error past its range).
BIGINT_ID = click.IntRange(1, 2**63 - 1)


def run_guarded(func):
    """Decorator: turn library and driver errors into ``click.ClickException`` (one line).

    A module of an optional extra that is not installed (torch, Pillow, dlib, ...) gives
    one line naming the extra (:func:`pgvision.extras.missing_extra_message`).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except ImportError as exc:
            from pgvision.extras import missing_extra_message

            message = missing_extra_message(exc)
            if message is None:
                raise
            raise click.ClickException(message) from None
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


def open_database(database_url: str | None, *, create: bool = True, autocommit: bool = True, source: str = "DATABASE_URL"):
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
