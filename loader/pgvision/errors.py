"""Exceptions of pgvision. Each message says what went wrong, the value, and the fix.

Every exception pgvision raises for a user's input or environment derives from
:class:`PgvisionError`; only :func:`pgvision.cli.common.run_guarded` turns them into
``click.ClickException`` (one ``Error: ...`` line); library callers catch them.
"""


class PgvisionError(Exception):
    """Base class: a one-line message that names the value and the fix."""


class DatabaseUnreachable(PgvisionError):
    """The server at the URL did not answer (stopped, wrong host, wrong credentials)."""


class BadConnectionString(PgvisionError):
    """DATABASE_URL (or PGVISION_READ_URL) is not a libpq connection string."""


class ExtensionMissing(PgvisionError):
    """pgvector is absent from the server, or older than the version pgvision needs."""


class SchemaMissing(PgvisionError):
    """The pgvision schema is not there yet: ``pgvision db upgrade`` creates it."""


class ModelMismatch(PgvisionError):
    """A model name is already registered with other dims, metric or weights."""


class UnknownModel(PgvisionError):
    """No model of that name is registered in ``pgvision.models``."""


class LockTimeout(PgvisionError):
    """Another session held a pgvision advisory lock for longer than the wait allowed."""


class AlreadyEnrolled(PgvisionError):
    """A face to enroll is in another identity's gallery already (moving it needs --reassign)."""


class InvalidValue(PgvisionError, ValueError):
    """An argument or option out of its range or not among its choices (also a ``ValueError``)."""


class PathNotFound(PgvisionError, FileNotFoundError):
    """A file or folder given by the user does not exist (also a ``FileNotFoundError``)."""


class ProbeUnusable(PgvisionError):
    """The image given to search with cannot be used (not a regular file, not an image, ...)."""


class ModelUnavailable(PgvisionError):
    """A model name, weights file or TorchScript file cannot be used (message says why)."""
