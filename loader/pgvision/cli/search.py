"""``pgvision search IMAGE`` and ``pgvision similar IMAGE_ID``: the SQL API from a shell.

``search`` embeds the probe image here with the model it names and calls
``pgvision.search_images``; ``similar`` calls ``pgvision.similar_images`` on a stored image.
Both print a table (nearest first) or, with ``--json``, a JSON array of objects with the
function's columns.
"""

from __future__ import annotations

import click

from pgvision.cli.common import (
    BIGINT_ID,
    database_url_option,
    json_text,
    open_database,
    read_url_option,
    run_guarded,
)
from pgvision.cli.load import build_embedder, model_options
from pgvision.text import display
from pgvision.server.connection import read_url_source, resolve_read_url

#: A PostgreSQL ``integer`` (past it, "integer out of range" would not name the option).
SQL_INT = click.IntRange(-(2**31), 2**31 - 1)

COLUMNS = ("image_id", "distance", "similarity", "label", "uri")


def search_options(func):
    # -k and --ef-search are checked by pgvision._check_query (one line naming the limits)
    options = [
        click.option("-k", "k", type=SQL_INT, default=10, show_default=True, help="Rows wanted (1..1000)."),
        click.option("--label", metavar="LABEL", help="Only images with this label [default: all]."),
        click.option("--ef-search", type=SQL_INT, default=None, metavar="N",
                     help="HNSW candidate list size (recall/speed) [default: the model's, 40]."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def format_table(rows: list[dict]) -> str:
    """Fixed-width text table of hits (columns :data:`COLUMNS`)."""
    if not rows:
        return "(no rows)"
    cells = [[_cell(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return display(str(value))  # labels come from folder names: escaped, so none drives the terminal


def _report(rows: list[dict], as_json: bool) -> None:
    click.echo(json_text(rows, indent=2) if as_json else format_table(rows))


def _fetch(conn, query: str, params: dict) -> list[dict]:
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


@click.command()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@search_options
@model_options
@database_url_option
@read_url_option
@click.option("--quiet", "-q", is_flag=True, help="Print nothing but the results.")
@run_guarded
def search(image, k, label, ef_search, as_json, model, weights, output, dims, metric, name, device,
           database_url, read_url, quiet):
    """Find the stored images nearest to IMAGE (a file), nearest first.

    The probe is embedded here with the same model options as `pgvision load` (the model's
    registered dims and weights digest must match), then pgvision.search_images runs.

    \b
    Example:
      pgvision search ./query.jpg -k 5
      pgvision search ./query.jpg --label tench --json
    """
    from pgvision.errors import ModelMismatch
    from pgvision.ingest.images import ImageSkipped
    from pgvision.load_images import embed_files
    from pgvision.registry import get_model

    with open_database(database_url, create=False) as conn:  # before the model loads: fail fast
        if not conn.execute("SELECT EXISTS (SELECT FROM pgvision.models WHERE kind = 'image')").fetchone()[0]:
            raise click.ClickException(
                "no image model is loaded yet, so there is nothing to search: "
                "run pgvision load PATH (or pgvision load-vectors FILE) first"
            )
    embedder = build_embedder(model, weights, output, dims, metric, name, device)
    spec = embedder.spec
    try:
        probe = embed_files(embedder, [image])[0]
    except ImageSkipped as exc:
        detail = f"{exc.reason}: {exc.detail}" if exc.detail else exc.reason
        raise click.ClickException(f"cannot use {display(image)} as a probe: {detail}") from None
    with open_database(resolve_read_url(read_url, database_url), source=read_url_source(read_url), create=False) as conn:
        row = get_model(conn, spec.name)
        if row["dims"] != spec.dims or (
            row["weights_sha256"] and spec.weights_sha256 and row["weights_sha256"] != spec.weights_sha256
        ):
            raise ModelMismatch(
                f"model {spec.name!r} is stored with {row['dims']}-d vectors (weights "
                f"{str(row['weights_sha256'])[:12]}) but this probe was embedded with {spec.dims}-d "
                f"(weights {str(spec.weights_sha256)[:12]}): pass the --weights/--model used to load it"
            )
        from pgvector import Vector

        rows = _fetch(
            conn,
            "SELECT image_id, distance, similarity, label, uri FROM pgvision.search_images("
            "%(q)s, k => %(k)s::integer, model => %(model)s, label => %(label)s, ef_search => %(ef)s::integer)",
            {"q": Vector(probe), "k": k, "model": spec.name, "label": label, "ef": ef_search},
        )
    _report(rows, as_json)


@click.command()
@click.argument("image_id", type=BIGINT_ID)
@search_options
@click.option("--model", metavar="NAME", default=None,
              help="Registered model name [default: the default image model].")
@database_url_option
@read_url_option
@run_guarded
def similar(image_id, k, label, ef_search, as_json, model, database_url, read_url):
    """Find the stored images nearest to stored image IMAGE_ID (itself excluded).

    Runs pgvision.similar_images, the function a BI tool calls with no vector in hand.

    \b
    Example:
      pgvision similar 42 -k 5
      pgvision similar 42 --model resnet50 --json
    """

    with open_database(resolve_read_url(read_url, database_url), source=read_url_source(read_url), create=False) as conn:
        rows = _fetch(
            conn,
            "SELECT image_id, distance, similarity, label, uri FROM pgvision.similar_images("
            "%(id)s::bigint, k => %(k)s::integer, model => %(model)s, label => %(label)s, ef_search => %(ef)s::integer)",
            {"id": image_id, "k": k, "model": model, "label": label, "ef": ef_search},
        )
    _report(rows, as_json)
