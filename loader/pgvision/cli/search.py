"""``pgvision search IMAGE`` and ``pgvision similar IMAGE_ID``: the SQL API from a shell.

``search`` embeds the probe image here with the model it names and calls
``pgvision.search_images``; ``similar`` calls ``pgvision.similar_images`` on a stored image.
Both print a table (nearest first) or, with ``--json``, a JSON array of objects with the
function's columns.
"""

from __future__ import annotations

import click

from pgvision.cli.common import json_text, open_database, run_guarded
from pgvision.cli.options import (
    BIGINT_ID,
    build_embedder,
    database_url_option,
    model_options,
    read_url_option,
    search_options,
)
from pgvision.server.connection import read_url_source, resolve_read_url
from pgvision.text import display

COLUMNS = ("image_id", "distance", "similarity", "label", "uri")


def format_table(rows: list[dict], header: bool = True) -> str:
    """Fixed-width text table of hits (columns :data:`COLUMNS`).

    Args:
        rows: the hits.
        header: print the column names and their rule, and ``(no rows)`` for no hits;
            without it only the hits' lines (``psql -t`` style; nothing for no hits).
    """
    if not rows:
        return "(no rows)" if header else ""
    cells = [[_cell(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = []
    if header:
        lines.append("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip())
        lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return display(str(value))  # labels come from folder names: escaped, so none drives the terminal


def _report(rows: list[dict], as_json: bool, quiet: bool = False) -> None:
    if as_json:
        click.echo(json_text(rows, indent=2))
    elif rows or not quiet:
        click.echo(format_table(rows, header=not quiet))


html_option = click.option(
    "--html", "html_file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
    help="Also write one self-contained HTML page of thumbnails, in rank order with their distances.")


def _write_html(html_file: str | None, title: str, rows: list[dict], query=None, quiet: bool = False) -> None:
    if not html_file:
        return
    from pgvision.review.results import search_page

    counts = search_page(html_file, title, rows, query=query)
    if not quiet:
        click.echo(f"wrote {display(str(counts.path))}: {counts.thumbs} thumbnails"
                   + (f", {counts.placeholders} not found" if counts.placeholders else ""), err=True)


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
@click.option("--quiet", "-q", is_flag=True,
              help="Print the hits' lines only: no column header, nothing when there is no hit (--json: unchanged).")
@html_option
@run_guarded
def search(image, k, label, ef_search, as_json, model, weights, output, dims, metric, name, device,
           database_url, read_url, quiet, html_file):
    """Find the stored images nearest to IMAGE (a file), nearest first.

    The probe is embedded here with the same model options as `pgvision load` (the model's
    registered dims and weights digest must match), then pgvision.search_images runs.

    \b
    Example:
      pgvision search ./query.jpg -k 5
      pgvision search ./query.jpg --label tench --json
      pgvision search ./query.jpg --html results.html
    """
    from pgvision.registry import check_probe_model, require_image_model

    read = resolve_read_url(read_url, database_url)
    with open_database(read, source=read_url_source(read_url), create=False) as conn:  # before the model loads
        require_image_model(conn)
    from pgvision.load_images import embed_probe  # torch

    embedder = build_embedder(model, weights, output, dims, metric, name, device)
    spec = embedder.spec
    probe = embed_probe(embedder, image)
    with open_database(read, source=read_url_source(read_url), create=False) as conn:
        check_probe_model(conn, spec)
        from pgvector import Vector

        rows = _fetch(
            conn,
            "SELECT image_id, distance, similarity, label, uri FROM pgvision.search_images("
            "%(q)s, k => %(k)s::integer, model => %(model)s, label => %(label)s, ef_search => %(ef)s::integer)",
            {"q": Vector(probe), "k": k, "model": spec.name, "label": label, "ef": ef_search},
        )
    _report(rows, as_json, quiet)
    _write_html(html_file, f"Nearest to {display(image)} ({spec.name})", rows, query=image, quiet=quiet)


@click.command()
@click.argument("image_id", type=BIGINT_ID)
@search_options
@click.option("--model", metavar="NAME", default=None,
              help="Registered model name [default: the default image model].")
@database_url_option
@read_url_option
@html_option
@run_guarded
def similar(image_id, k, label, ef_search, as_json, model, database_url, read_url, html_file):
    """Find the stored images nearest to stored image IMAGE_ID (itself excluded).

    Runs pgvision.similar_images, the function a BI tool calls with no vector in hand.

    \b
    Example:
      pgvision similar 42 -k 5
      pgvision similar 42 --model resnet50 --json
      pgvision similar 42 --html similar.html
    """

    with open_database(
        resolve_read_url(read_url, database_url), source=read_url_source(read_url), create=False
    ) as conn:
        rows = _fetch(
            conn,
            "SELECT image_id, distance, similarity, label, uri FROM pgvision.similar_images("
            "%(id)s::bigint, k => %(k)s::integer, model => %(model)s, label => %(label)s, "
            "ef_search => %(ef)s::integer)",
            {"id": image_id, "k": k, "model": model, "label": label, "ef": ef_search},
        )
        query = conn.execute("SELECT uri FROM pgvision.images WHERE image_id = %s", (image_id,)).fetchone()[0] \
            if html_file else None
    _report(rows, as_json)
    _write_html(html_file, f"Nearest to image {image_id}", rows, query=query)
