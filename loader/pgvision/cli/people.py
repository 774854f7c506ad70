"""People commands: ``people cluster|list|show|name|merge|move|split|ignore`` and ``eval cluster``.

Parses options and reports; the work is in :mod:`pgvision.people` (and in SQL).
"""

from __future__ import annotations

import click

from pgvision.cli.common import json_text, open_database, run_guarded
from pgvision.cli.options import (
    BIGINT_ID,
    FiniteFloatRange,
    database_url_option,
    face_model_options,
    quiet_option,
)
from pgvision.text import display

_CLUSTER_HELP = {
    "max_distance": "Largest distance of a close pair, in the model's metric (dlib: L2) "
    "[default: the model's calibrated threshold x 1.1, else dlib 0.50 / facenet 0.25].",
    "min_faces": "Faces within --max-distance (itself counted) that make a core face and the smallest new person.",
    "neighbours": "Neighbours asked from the ANN index per face (k).",
}


def cluster_options(command):
    """The clustering options ``people cluster`` and ``eval cluster`` share (one declaration)."""
    options = [
        click.option("--max-distance", type=FiniteFloatRange(min=0, min_open=True), metavar="DIST",
                     help=_CLUSTER_HELP["max_distance"]),
        click.option("--min-faces", type=click.IntRange(1, 1000), default=3, show_default=True,
                     help=_CLUSTER_HELP["min_faces"]),
        click.option("--neighbours", type=click.IntRange(1, 1000), default=16, show_default=True,
                     help=_CLUSTER_HELP["neighbours"]),
    ]
    for option in reversed(options):  # as if written top-down above the command
        command = option(command)
    return command


def _name(name) -> str:
    return display(name) if name is not None else "(unnamed)"


@click.group()
def people() -> None:
    """People: faces grouped into persons by clustering, and named, merged, moved and split by hand.

    A person may have no name (found by clustering). Every change is one transaction with
    a row in pgvision.people_audit; hand-placed faces are never moved by clustering.

    \b
    Example:
      pgvision people cluster
      pgvision people list --unnamed --html people.html
      pgvision people name 12 "Ann Lee"
    """


@people.command("cluster")
@click.option("--model", default=None, metavar="NAME", help="Face model [default: the default face model].")
@click.option(
    "--full",
    is_flag=True,
    help="Cluster every automatic person again (named people and people with hand-placed faces keep "
    "their faces); default: only faces without a person (incremental).",
)
@cluster_options
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100000),
    default=1000,
    show_default=True,
    help="Faces per transaction (a kill leaves whole batches; a rerun resumes the pass).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@quiet_option
@database_url_option
@run_guarded
def people_cluster(model, full, max_distance, min_faces, neighbours, batch_size, as_json, quiet, database_url):
    """Group the faces into people, in SQL on the model's ANN index.

    Incremental (default): faces without a person join the person they have at least two
    close pairs with, or form new people of at least --min-faces faces; the rest wait and
    are retried when new faces land near them. --full re-runs every automatic person.
    An interrupted pass is resumed by the next run of the same mode.

    \b
    Example:
      pgvision people cluster
      pgvision people cluster --full --max-distance 0.5
    """
    from pgvision.people.cluster import run_pass

    with open_database(database_url, create=False) as conn:
        result = run_pass(
            conn,
            model,
            "full" if full else "incremental",
            max_distance,
            min_faces,
            neighbours,
            batch_size,
            progress=not quiet and not as_json,
        )
    click.echo(json_text(result.as_dict()) if as_json else result.format())


def _faces_shown(conn, person, per_person):
    from pgvision.people.verbs import person_faces

    return person_faces(conn, person.identity_id)[:per_person]


@people.command("list")
@click.option("--unnamed", is_flag=True, help="Only people without a name.")
@click.option("--limit", type=click.IntRange(1), metavar="N", help="At most N people (the most faces first).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per person.")
@click.option(
    "--html",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write a page of face thumbnails per person to FILE.",
)
@click.option(
    "--faces-per-person",
    type=click.IntRange(1, 1000),
    default=12,
    show_default=True,
    help="Thumbnails per person on the --html page.",
)
@database_url_option
@run_guarded
def people_list(unnamed, limit, as_json, html, faces_per_person, database_url):
    """List people with their face and photo counts, the most faces first.

    \b
    Example:
      pgvision people list --unnamed --limit 20
      pgvision people list --html people.html
    """
    from pgvision.people.pages import write_people_page
    from pgvision.people.verbs import list_people

    with open_database(database_url, create=False) as conn:
        found = list_people(conn, unnamed=unnamed, limit=limit)
        shown = [(p, _faces_shown(conn, p, faces_per_person)) for p in found] if html else []
    for p in found:
        if as_json:
            click.echo(json_text(p.as_dict()))
        else:
            click.echo(
                f"{p.identity_id:>8}  {_name(p.name)}: {p.faces} faces, {p.photos} photos, {p.hand_faces} by hand"
            )
    if not found and not as_json:
        click.echo("no people yet: run pgvision people cluster (or enroll someone)")
    if html:
        counts = write_people_page(html, shown, title="People" + (" without a name" if unnamed else ""))
        click.echo(
            f"page: {display(str(counts.path))} ({counts.thumbs} thumbnails, {counts.placeholders} not shown)",
            err=as_json,
        )


@people.command("show")
@click.argument("person", type=BIGINT_ID)
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the person and its faces.")
@click.option(
    "--html",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Also write a page of the person's face thumbnails to FILE.",
)
@database_url_option
@run_guarded
def people_show(person, as_json, html, database_url):
    """Show a person and its faces (face id, photo, box, who placed it).

    \b
    Example:
      pgvision people show 12 --html ann.html
    """
    from pgvision.errors import InvalidValue
    from pgvision.people.pages import person_title, write_people_page
    from pgvision.people.verbs import get_person, person_faces

    with open_database(database_url, create=False) as conn:
        p = get_person(conn, person)
        if p is None:
            raise InvalidValue(f"no person with identity_id {person}: see pgvision people list")
        faces = person_faces(conn, person)
    if as_json:
        click.echo(json_text({**p.as_dict(), "face_list": [f.as_dict() for f in faces]}))
    else:
        click.echo(person_title(p))
        for f in faces:
            click.echo(f"  face {f.face_id}  {display(f.uri)}  box {list(f.box)}  {f.assigned_by or '-'}")
    if html:
        counts = write_people_page(html, [(p, faces)], title=person_title(p))
        click.echo(
            f"page: {display(str(counts.path))} ({counts.thumbs} thumbnails, {counts.placeholders} not shown)",
            err=as_json,
        )


def _echo_person(row, verb: str) -> None:
    click.echo(f"{verb} person {row[0]}: {_name(row[1])}, {row[2]} faces")


@people.command("name")
@click.argument("person", type=BIGINT_ID)
@click.argument("name", required=False)
@click.option("--clear", is_flag=True, help="Remove the person's name instead.")
@database_url_option
@run_guarded
def people_name(person, name, clear, database_url):
    """Name or rename PERSON (its faces become hand-placed); --clear removes the name.

    \b
    Example:
      pgvision people name 12 "Ann Lee"
    """
    from pgvision.errors import InvalidValue
    from pgvision.people.verbs import name_person

    if (name is None) == (not clear):
        raise InvalidValue("give a NAME, or --clear to remove the name (not both)")
    with open_database(database_url, create=False) as conn:
        _echo_person(name_person(conn, person, None if clear else name), "named" if not clear else "unnamed")


@people.command("merge")
@click.argument("into", type=BIGINT_ID)
@click.argument("other", type=BIGINT_ID)
@database_url_option
@run_guarded
def people_merge(into, other, database_url):
    """Merge person OTHER into person INTO (OTHER's faces move; OTHER is removed).

    \b
    Example:
      pgvision people merge 12 40
    """
    from pgvision.people.verbs import merge_people

    with open_database(database_url, create=False) as conn:
        _echo_person(merge_people(conn, into, other), "merged into")


@people.command("move")
@click.argument("faces", nargs=-1, required=True, type=BIGINT_ID)
@click.option("--to", "to", required=True, metavar="ID|new", help="The person to move the faces to, or 'new'.")
@database_url_option
@run_guarded
def people_move(faces, to, database_url):
    """Move FACE... (face ids) to another person, or to a new one (--to new).

    \b
    Example:
      pgvision people move 101 102 --to 12
      pgvision people move 103 --to new
    """
    from pgvision.errors import InvalidValue
    from pgvision.people.verbs import move_faces

    if to != "new" and not (to.isdigit() and 0 < int(to) < 2**63):
        raise InvalidValue(f"--to takes a person's identity_id or 'new', got {to!r}")
    with open_database(database_url, create=False) as conn:
        _echo_person(move_faces(conn, list(faces), None if to == "new" else int(to)), "moved to")


@people.command("split")
@click.argument("person", type=BIGINT_ID)
@click.argument("faces", nargs=-1, required=True, type=BIGINT_ID)
@database_url_option
@run_guarded
def people_split(person, faces, database_url):
    """Split FACE... off PERSON into a new unnamed person.

    \b
    Example:
      pgvision people split 12 101 102
    """
    from pgvision.people.verbs import split_person

    with open_database(database_url, create=False) as conn:
        _echo_person(split_person(conn, person, list(faces)), "split off as")


@people.command("ignore")
@click.argument("faces", nargs=-1, required=True, type=BIGINT_ID)
@click.option("--undo", is_flag=True, help="Take the mark back.")
@database_url_option
@run_guarded
def people_ignore(faces, undo, database_url):
    """Mark FACE... as not a face (never clustered, in no person); --undo takes it back.

    \b
    Example:
      pgvision people ignore 205
    """
    from pgvision.people.verbs import ignore_faces

    with open_database(database_url, create=False) as conn:
        rows = ignore_faces(conn, list(faces), not undo)
    click.echo(f"{'ignored' if not undo else 'no longer ignored'}: faces {', '.join(str(r[0]) for r in rows)}")


@click.command("cluster")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@face_model_options
@cluster_options
@click.option("--sweep", metavar="D1,D2,...", help="Also score a full pass at each of these max distances (the curve).")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE.png",
    help="Draw BCubed precision / recall against max distance (needs --sweep and matplotlib).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--keep-database", is_flag=True, help="Keep the scratch database (its name is printed).")
@quiet_option
@database_url_option
@run_guarded
def eval_cluster(
    directory,
    model,
    weights,
    detector,
    upsample,
    min_face_px,
    device,
    crop,
    max_distance,
    min_faces,
    neighbours,
    sweep,
    plot,
    as_json,
    keep_database,
    quiet,
    database_url,
):
    """Clustering on DIRECTORY/<person>/*: BCubed and pairwise precision / recall, people found.

    Loads the photos into a scratch database with the folder names hidden from the
    clustering, runs a full pass with the defaults (or --max-distance), and scores the
    largest face of each photo (the labelled one) against its folder.

    \b
    Example:
      pgvision eval cluster ./lfw_faces
      pgvision eval cluster ./lfw_faces --sweep 0.35,0.4,0.45,0.5,0.55,0.6 --plot sweep.png
    """
    from pgvision.cli.options import build_pipeline
    from pgvision.errors import InvalidValue
    from pgvision.evaluate_faces import scratch_database
    from pgvision.evaluate_people import evaluate_clustering, plot_sweep
    from pgvision.server.connection import connect, resolve_url

    distances = []
    if sweep:
        try:
            distances = [float(x) for x in sweep.split(",") if x.strip()]
        except ValueError:
            raise InvalidValue(
                f"--sweep takes distances separated by commas, e.g. 0.4,0.5,0.6; got {sweep!r}"
            ) from None
        if not distances or not all(0 < d < float("inf") for d in distances):
            raise InvalidValue(f"--sweep takes finite distances > 0, got {sweep!r}")
    if plot and not distances:
        raise InvalidValue("--plot draws the --sweep: give --sweep D1,D2,... too")
    if plot:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            raise InvalidValue("--plot needs matplotlib: pip install 'pgvision[plot]'")
    pipeline = build_pipeline(model, weights, detector, upsample, min_face_px, device, crop)
    with scratch_database(resolve_url(database_url), keep=keep_database) as url:
        with connect(url, autocommit=True) as conn:
            result = evaluate_clustering(
                conn,
                directory,
                pipeline,
                max_distance=max_distance,
                min_faces=min_faces,
                neighbours=neighbours,
                sweep=distances,
                progress=not quiet and not as_json,
            )
        if keep_database:
            click.echo(f"scratch database kept: {url}", err=as_json)
    if as_json:
        click.echo(json_text(result.as_dict()))
    else:
        click.echo(result.format())
    if plot:
        plot_sweep(result, plot)
        click.echo(f"sweep plot: {plot}", err=as_json)
