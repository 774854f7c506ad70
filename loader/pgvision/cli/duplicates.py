"""``pgvision duplicates``: groups of duplicate images, as a table, JSON or an HTML page.

Calls ``pgvision.duplicate_groups`` (or ``pgvision.duplicates_of`` with ``--of IMAGE_ID``);
``--fill-hashes`` first computes the perceptual hashes of images stored without one
(:func:`pgvision.duplicates.fill.fill_hashes`, resumable).
"""

from __future__ import annotations

import click

from pgvision.cli.common import json_text, open_database, run_guarded
from pgvision.cli.options import BIGINT_ID, FiniteFloatRange, database_url_option, read_url_option
from pgvision.server.connection import read_url_source, resolve_read_url
from pgvision.text import display

COLUMNS = ("group_id", "image_id", "keeper", "distance", "hash", "size", "label", "uri")


def format_groups(rows: list[dict]) -> str:
    """Fixed-width table of duplicate rows (columns :data:`COLUMNS`), a blank line between groups."""
    if not rows:
        return "(no duplicates)"
    cells = []
    for r in rows:
        cells.append([
            str(r["group_id"]), str(r["image_id"]), "yes" if r["is_keeper"] else "",
            f"{r['distance']:.4f}", "" if r["hash_distance"] is None else str(r["hash_distance"]),
            f"{r['width']}x{r['height']}" if r["width"] and r["height"] else "",
            display(r["label"]) if r["label"] is not None else "", display(r["uri"]),
        ])
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for i, row in enumerate(cells):
        if i and rows[i]["group_id"] != rows[i - 1]["group_id"]:
            lines.append("")
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


@click.command()
@click.option("--tier", type=click.Choice(["same", "similar"]), default="same", show_default=True,
              help="same: the same picture (re-encoded, resized, cropped up to 10 %): hash and embedding agree; "
                   "similar: near-identical shots: embedding distance only.")
@click.option("--of", "of_id", type=BIGINT_ID, metavar="IMAGE_ID",
              help="Only this image and its direct duplicates (pgvision.duplicates_of).")
@click.option("--model", metavar="NAME",
              help="Image model whose embeddings compare [default: the default image model].")
@click.option("--max-distance", type=FiniteFloatRange(min=0), metavar="D",
              help="Embedding distance limit in the model's metric [default: the tier's, same 0.34, similar 0.11 "
                   "cosine distance; docs/duplicates.md].")
@click.option("--max-hash-distance", type=click.IntRange(0, 64), metavar="BITS",
              help="Perceptual-hash limit for tier same, in bits of 64 [default: 12].")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of rows instead of a table.")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True), metavar="FILE",
              help="Also write one self-contained HTML page of thumbnails, the groups side by side, keepers marked.")
@click.option("--fill-hashes", is_flag=True,
              help="First compute the perceptual hash of stored images that have none (loaded before hashes "
                   "existed, or decoded on the GPU); resumable: a rerun continues.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no notes on stderr.")
@database_url_option
@read_url_option
@run_guarded
def duplicates(tier, of_id, model, max_distance, max_hash_distance, as_json, html_file, fill_hashes, quiet,
               database_url, read_url):
    """List groups of duplicate images, the keeper (most pixels, then oldest) first.

    Tier same is safe to act on (delete all but the keeper); tier similar is for review.

    \b
    Example:
      pgvision duplicates --fill-hashes
      pgvision duplicates --tier similar --html similar.html
      pgvision duplicates --of 42 --json
    """
    from pgvision.duplicates.groups import find_duplicates_of, find_groups, images_without_hash

    if fill_hashes:
        from pgvision.duplicates.fill import fill_hashes as fill

        with open_database(database_url, create=False) as conn:
            report = fill(conn, progress=not quiet)
        click.echo(report.text(), err=True)
    read = resolve_read_url(read_url, database_url)
    with open_database(read, source=read_url_source(read_url), create=False) as conn:
        if of_id is not None:
            rows = find_duplicates_of(conn, of_id, tier, model, max_distance, max_hash_distance)
        else:
            rows = find_groups(conn, tier, model, max_distance, max_hash_distance)
        missing = images_without_hash(conn) if tier == "same" and not quiet else 0
    if missing:
        click.echo(f"note: {missing} images have no perceptual hash yet and cannot be in a 'same' "
                   "group: run pgvision duplicates --fill-hashes", err=True)
    if as_json:
        click.echo(json_text(rows, indent=2))
    else:
        click.echo(format_groups(rows))
    if html_file:
        from pgvision.review.results import duplicates_page

        counts = duplicates_page(html_file, rows, tier=tier)
        if not quiet:
            click.echo(f"wrote {display(str(counts.path))}: {counts.sections} groups, {counts.thumbs} thumbnails"
                       + (f", {counts.placeholders} not found" if counts.placeholders else ""), err=True)
