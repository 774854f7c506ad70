"""The ``pgvision`` command line. ``cli`` modules parse and report; the work is elsewhere.

Each command group lives in its own module and is registered here with ``add_command``.
Library exceptions (:class:`pgvision.errors.PgvisionError`) become one-line
``Error: ...`` messages with exit status 1.
"""

from __future__ import annotations

import click

from pgvision import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pgvision")
def main() -> None:
    """Image similarity search and face identification inside PostgreSQL + pgvector.

    With no configuration every command uses an embedded PostgreSQL (started on demand);
    --database-url or DATABASE_URL points at any PostgreSQL with pgvector >= 0.8.

    \b
    Example:
      pgvision db upgrade
      pgvision load ./photos
      psql "$(pgvision db url)" -c "SELECT * FROM pgvision.similar_images(1, 5)"
    """


from pgvision.cli.db import db  # noqa: E402

main.add_command(db)

from pgvision.cli.load import load, load_vectors  # noqa: E402
from pgvision.cli.search import search, similar  # noqa: E402

main.add_command(load)
main.add_command(load_vectors)
main.add_command(search)
main.add_command(similar)

from pgvision.cli.faces import calibrate, enroll, eval_group, faces, identify  # noqa: E402

main.add_command(faces)
main.add_command(enroll)
main.add_command(identify)
main.add_command(calibrate)
main.add_command(eval_group)

from pgvision.cli.people import eval_cluster, people  # noqa: E402

main.add_command(people)
eval_group.add_command(eval_cluster)
from pgvision.cli.duplicates import duplicates  # noqa: E402

main.add_command(duplicates)
