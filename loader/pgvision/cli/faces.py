"""Face commands: ``faces load``, ``enroll``, ``identify``, ``calibrate``, ``eval identify``.

Parses options and reports; the work is in :mod:`pgvision.faces`.
"""

from __future__ import annotations

import click

from pgvision.cli.common import json_text, open_database, run_guarded
from pgvision.cli.options import (
    FiniteFloatRange,
    build_pipeline,
    collection_option,
    database_url_option,
    face_model_options,
    quiet_option,
    read_url_option,
)
from pgvision.text import display


@click.group()
def faces() -> None:
    """Face loading: detect, align, embed and store every face of a set of photos.

    \b
    Example:
      pgvision faces load ./people --identity-from parent-dir
    """


@faces.command("load")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@face_model_options
@click.option(
    "--identity-from",
    type=click.Choice(["parent-dir", "none"]),
    default="none",
    show_default=True,
    help="parent-dir: enroll the largest face of each photo under its folder's name (people/Ann/1.jpg -> Ann).",
)
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Photos per transaction (a batch lands whole or not at all).")
@click.option("--reassign", is_flag=True,
              help="With --identity-from: move a face already in another person's gallery (else: refused).")
@click.option("--cluster", "cluster", is_flag=True,
              help="Afterwards, group the faces without a person into people (as pgvision people cluster).")
@quiet_option
@collection_option
@database_url_option
@run_guarded
def faces_load(paths, model, weights, detector, upsample, min_face_px, device, crop, identity_from, batch_size,
               reassign, cluster, quiet, collection, database_url):
    """Detect every face of the photos under PATH..., align, embed and store it.

    Idempotent and resumable: photos already scanned with this detector and embedded with
    this model are skipped. Photos without a face are recorded in pgvision.face_scans
    (0 faces) and counted; faces too small to align are counted and not stored.

    \b
    Example:
      pgvision faces load ./people --identity-from parent-dir
      pgvision faces load ./photos --model facenet --weights facenet.pt --detector cnn
      pgvision faces load ./acme_people --identity-from parent-dir --collection acme
      pgvision faces load ./photos --cluster
    """
    from pgvision.load_faces import load_faces

    pipeline = build_pipeline(model, weights, detector, upsample, min_face_px, device, crop)
    with open_database(database_url) as conn:
        summary = load_faces(conn, paths, pipeline, identity_from=identity_from, batch_size=batch_size,
                             progress=not quiet, reassign=reassign, collection=collection)
        click.echo(summary.format())
        if cluster:
            from pgvision.people.cluster import run_pass

            click.echo(run_pass(conn, model, "incremental", progress=not quiet).format())


@click.command("enroll")
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True))
@face_model_options
@click.option("--reassign", is_flag=True,
              help="Move a face that is already in another person's gallery to NAME (else: refused).")
@quiet_option
@collection_option
@database_url_option
@run_guarded
def enroll(name, images, model, weights, detector, upsample, min_face_px, device, crop, reassign, quiet, collection,
           database_url):
    """Enroll NAME with the largest face of each of IMAGE... (its gallery).

    Several photos per person make a better gallery: the decision rule uses the mean of
    all of them (see docs/faces.md). Photos are loaded as by `faces load` if needed.

    \b
    Example:
      pgvision enroll "Ann Lee" ann1.jpg ann2.jpg ann3.jpg
      pgvision enroll "Ann Lee" ann1.jpg --collection acme
    """
    from pgvision.faces.store import gallery_size
    from pgvision.load_faces import load_faces

    pipeline = build_pipeline(model, weights, detector, upsample, min_face_px, device, crop)
    with open_database(database_url) as conn:
        summary = load_faces(conn, images, pipeline, identity=name, progress=not quiet, reassign=reassign,
                             collection=collection)
        total = gallery_size(conn, name, model)
    click.echo(summary.format())
    click.echo(f"{display(name)}: {total} gallery faces for model {model}")

    unused = ", ".join(f"{display(path)} ({reason}: {display(detail)})" if detail else f"{display(path)} ({reason})"
                       for path, reason, detail in summary.skipped_files)
    if not total:
        raise click.ClickException(
            f"{display(name)} is not enrolled: "
            + (f"no usable face in {unused}" if unused else "no face found in the photos given")
            + f": give photos with one clear face at least --min-face-px ({min_face_px}) pixels wide"
        )
    if unused:
        raise click.ClickException(f"{display(name)} is enrolled, but these photos were not used: {unused}")


@click.command("identify")
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@face_model_options
@click.option("--threshold", type=FiniteFloatRange(min=0), metavar="DIST",
              help="Largest distance that matches, in the model's metric (dlib: L2; facenet: cosine distance) "
                   "[default: the model's calibrated threshold].")
@click.option("--min-margin", type=FiniteFloatRange(min=0), metavar="DIST",
              help="Smallest gap between the best and the second identity's distance [default: the model's].")
@click.option("--candidates", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Candidate identities asked from SQL per face.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per face instead of a table.")
@click.option("--quiet", "-q", is_flag=True,
              help="One line per face, 'face N: NAME' or 'face N: unknown': no box, distances or notes "
                   "(--json: unchanged).")
@database_url_option
@read_url_option
@run_guarded
def identify(image, model, weights, detector, upsample, min_face_px, device, crop, threshold, min_margin, candidates,
             as_json, quiet, database_url, read_url):
    """Identify every face of IMAGE against the enrolled gallery, through SQL pgvision.identify.

    For each face: the identity given (or unknown), its distance and similarity, and the
    margin to the next identity. One identity is never given to two faces of the photo.

    \b
    Example:
      pgvision identify group.jpg
      pgvision identify probe.jpg --model facenet --weights facenet.pt --threshold 0.35
    """
    from pgvision.faces.identify import identify_photo
    from pgvision.server.connection import read_url_source, resolve_read_url

    pipeline = build_pipeline(model, weights, detector, upsample, min_face_px, device, crop)
    with open_database(
        resolve_read_url(read_url, database_url), source=read_url_source(read_url), create=False, autocommit=False
    ) as conn:
        verdicts = identify_photo(conn, image, pipeline, threshold, min_margin, candidates)
        note = uncalibrated_note(conn, pipeline.model.name) if threshold is None and not (as_json or quiet) else None
    if note:
        click.echo(f"note: {note}", err=True)
    if not verdicts:
        click.echo(f"{display(image)}: no face found")
        return
    for i, v in enumerate(verdicts):
        fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
        if as_json:
            click.echo(json_text({"face": i, "box": list(v.box), "name": v.name, "identity_id": v.identity_id,
                                   "distance": v.distance, "similarity": v.similarity, "margin": v.margin,
                                   "match": v.name is not None, "reassigned": v.reassigned}))
            continue
        # names come from people and folder names: escaped, so none can drive the terminal
        best = display(v.candidates[0].name) if v.candidates else "-"
        verdict = display(v.name) if v.name is not None else "unknown"
        if quiet:
            click.echo(f"face {i}: {verdict}")
            continue
        note = ""
        if v.reassigned:
            note = f" ({best} is given to another face of this photo that fits better)"
        elif v.name is None and v.candidates:
            note = f" (nearest: {best})"
        click.echo(f"face {i} box {v.box}: {verdict}{note}; distance {fmt(v.distance)}, "
                   f"similarity {fmt(v.similarity)}, margin {fmt(v.margin)}")


def uncalibrated_note(conn, model: str) -> str | None:
    """One line when ``model`` was never calibrated on this gallery (no ``pgvision.calibrations``
    row): its threshold is then a default (dlib: measured on LFW) or a published 1:1 value."""
    row = conn.execute(
        "SELECT m.threshold, NOT EXISTS (SELECT 1 FROM pgvision.calibrations c WHERE c.model_id = m.model_id) "
        "FROM pgvision.models m WHERE m.name = %s", (model,)).fetchone()
    if row is None or not row[1]:
        return None
    return (f"model {model} was never calibrated on this gallery: its threshold {row[0]:.4f} was not measured on "
            "your people, and a larger gallery accepts more strangers at the same threshold (docs/faces.md); run "
            "pgvision calibrate once people are enrolled")


def print_calibration(cal) -> None:
    """The calibration's open-set and per-comparison figures, and the support note."""
    click.echo(f"model {cal.model} ({cal.metric}): {cal.identities} identities, {cal.faces} gallery faces; "
               f"{cal.genuine_pairs} genuine, {cal.impostor_pairs} impostor comparisons")
    click.echo(f"open-set: {cal.strangers} stranger searches (each person left out in turn), "
               f"{len(cal.open_set.genuine_distance)} genuine searches, through SQL identify_face")
    click.echo(f"{'per comparison':<20}{'threshold':>10}{'FAR':>10}{'FRR':>10}{'TAR':>10}{'FPIR':>10}{'TPIR':>10}")
    for label, t, far, frr, tar in cal.table:
        fpir, tpir = cal.open_set.rates(t, cal.min_margin)
        click.echo(f"{label:<20}{t:>10.4f}{far:>10.4f}{frr:>10.4f}{tar:>10.4f}{fpir:>10.4f}{tpir:>10.4f}")
    if cal.target_far is not None and cal.impostor_pairs * cal.target_far < 10:
        click.echo(
            f"note: {cal.impostor_pairs} impostor comparisons put fewer than 10 under a FAR of {cal.target_far:g}: "
            "the empirical quantile is unreliable there; enroll more people for a measured FAR."
        )
    note = cal.support_note()
    if note:
        click.echo(f"note: {note}")


@click.command("calibrate")
@click.option("--model", default="dlib", show_default=True, metavar="NAME", help="Face model to calibrate.")
@click.option("--target-fpir", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=0.01,
              show_default=True, help="Open-set target: highest share of strangers (people never enrolled) accepted "
                                      "as anyone, estimated by leaving each enrolled person out in turn.")
@click.option("--target-far", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
              help="Per-comparison target instead: highest false accept rate of one identity-vs-face comparison "
                   "(overrides --target-fpir).")
@click.option("--margin-frr", type=FiniteFloatRange(0, 0.5), default=0.0, show_default=True,
              help="Share of correct genuine searches the margin condition may reject (0 = no margin condition).")
@click.option("--method", type=click.Choice(["auto", "empirical", "normal"]), default="auto", show_default=True,
              help="How the threshold is found: empirical quantile of the stranger searches (impostor comparisons "
                   "with --target-far); normal = Gaussian fit to every impostor comparison, the FPIR target turned "
                   "into a per-comparison one over the N enrolled identities, 1-(1-FPIR)^(1/N); auto = normal when "
                   "fewer than 10 would fall under the target.")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), metavar="FILE.png",
              help="Draw the ROC curve (TAR against FAR) to this PNG file (needs pgvision[plot]).")
@click.option("--dry-run", is_flag=True, help="Print the table; store nothing.")
@click.option("--quiet", "-q", is_flag=True,
              help="Print only the threshold line ('stored: ...'): no table, no notes.")
@database_url_option
@run_guarded
def calibrate(model, target_fpir, target_far, margin_frr, method, plot, dry_run, quiet, database_url):
    """Choose the model's threshold on the enrolled gallery: open-set (FPIR) by default.

    Each enrolled person in turn is left out of the gallery (in a transaction rolled back,
    nothing stored) and their faces are searched with SQL identify_face against everyone
    else: the stranger scores. The threshold is the largest distance that accepts at most
    --target-fpir of them; the expected FPIR and TPIR (each gallery face searched against
    the rest of the gallery: right identity first and accepted) are printed and stored with
    the threshold (pgvision.calibrations). Terms: NIST FRVT 1:N (NISTIR 8271), ISO/IEC 19795-1.

    \b
    Example:
      pgvision calibrate --model dlib --target-fpir 0.01
      pgvision calibrate --model dlib --target-far 0.001 --plot roc.png
    """
    from pgvision.faces.calibrate import calibrate as run
    from pgvision.faces.calibrate import plot_roc, store_calibration
    from pgvision.faces.embed import DLIB_THRESHOLD, FACENET_THRESHOLD

    if plot:
        require_matplotlib()
    published = {"dlib": DLIB_THRESHOLD, "facenet": FACENET_THRESHOLD}.get(model)
    with open_database(database_url, create=False) as conn:
        cal = run(conn, model, target_fpir=target_fpir, target_far=target_far, margin_frr=margin_frr,
                  published_threshold=published, method=method)
        if not dry_run:
            store_calibration(conn, cal)
    if not quiet:
        print_calibration(cal)
    target = cal.target_label()
    click.echo(f"{'stored' if not dry_run else 'would store'}: threshold {cal.threshold:.4f} ({target}, {cal.method}), "
               f"min_margin {cal.min_margin:.4f}; expected FPIR {cal.expected_fpir:.4f} "
               f"(over {cal.strangers} stranger searches), expected TPIR {cal.expected_tpir:.4f} "
               f"(FNIR {1 - cal.expected_tpir:.4f}); per comparison FAR {cal.far:.4f}, TAR {cal.tar:.4f}")
    if plot:
        plot_roc(cal, plot)
        click.echo(f"ROC curve: {plot}")


def require_matplotlib() -> None:
    """Fail with one line naming the extra when matplotlib is absent (before any work is done)."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise click.ClickException("--plot needs matplotlib: pip install 'pgvision[plot]'")


@click.group("eval")
def eval_group() -> None:
    """Evaluations on labelled data.

    \b
    Example:
      pgvision eval identify ./lfw_faces --enroll-per-identity 5 --unknown-fraction 0.5
    """


@eval_group.command("identify")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@face_model_options
@click.option("--enroll-per-identity", type=click.IntRange(1, 1000), default=5, show_default=True,
              help="Photos enrolled per enrolled identity (its first N with a face, by file name).")
@click.option("--unknown-fraction", type=FiniteFloatRange(0, 1, max_open=True), default=0.5, show_default=True,
              help="Share of identities never enrolled (their photos are the non-mated probes).")
@click.option("--split", type=click.Choice(["first", "second"]), default="first", show_default=True,
              help="Which identities are enrolled: first (with --unknown-fraction 0.5, the 1st, 3rd, ... by name) "
                   "or second (the same rule over the names in reverse order: the other half).")
@click.option("--target-fpir", type=FiniteFloatRange(0, 1, min_open=True, max_open=True), default=0.01,
              show_default=True, help="Target FPIR of the calibration run on the gallery (as calibrate).")
@click.option("--target-far", type=FiniteFloatRange(0, 1, min_open=True, max_open=True),
              help="Calibrate per comparison instead (as calibrate --target-far).")
@click.option("--margin-frr", type=FiniteFloatRange(0, 0.5), default=0.0, show_default=True,
              help="As calibrate --margin-frr.")
@click.option("--method", type=click.Choice(["auto", "empirical", "normal"]), default="auto", show_default=True,
              help="How the threshold is found: empirical impostor quantile, Gaussian fit to the impostor distances, "
                   "or auto (Gaussian when fewer than 10 impostor comparisons fall under the target FAR).")
@click.option("--plot", type=click.Path(dir_okay=False, writable=True), metavar="FILE.png",
              help="Draw the TPIR-FPIR curves to this PNG file.")
@click.option("--roc-plot", type=click.Path(dir_okay=False, writable=True), metavar="FILE.png",
              help="Draw the gallery's ROC curve (the calibration) to this PNG file.")
@click.option("--keep-database", is_flag=True, help="Keep the scratch database (its name is printed).")
@quiet_option
@database_url_option
@run_guarded
def eval_identify(directory, model, weights, detector, upsample, min_face_px, device, crop, enroll_per_identity,
                  unknown_fraction, split, target_fpir, target_far, margin_frr, method, plot, roc_plot, keep_database,
                  quiet, database_url):
    """Open-set identification on DIRECTORY/<identity>/*: rank-1, TPIR and FPIR.

    Runs in a scratch database created on the server (and dropped afterwards): enrolls
    --enroll-per-identity photos of part of the identities, calibrates on that gallery
    alone (as pgvision calibrate, default --target-fpir 0.01), probes with the other photos
    of enrolled people (mated) and with every photo of the others (non-mated) through SQL
    identify_face, and reports TPIR and FPIR at the calibrated threshold first (what a
    deployment gets), then the oracle curve: TPIR at fixed FPIRs for rule v2 and the
    nearest-face rule, thresholds chosen on the probes themselves.

    \b
    Example:
      pgvision eval identify ./lfw_faces --enroll-per-identity 5 \\
          --unknown-fraction 0.5 --plot tpir_fpir.png
    """
    from pgvision.evaluate_faces import (
        evaluate_identification,
        plot_tpir_fpir,
        scratch_database,
    )
    from pgvision.faces.calibrate import plot_roc
    from pgvision.server.connection import connect, resolve_url

    if plot or roc_plot:
        require_matplotlib()
    pipeline = build_pipeline(model, weights, detector, upsample, min_face_px, device, crop)
    with scratch_database(resolve_url(database_url), keep=keep_database) as url:
        with connect(url, autocommit=True) as conn:
            result = evaluate_identification(conn, directory, pipeline, enroll_per_identity, unknown_fraction,
                                             target_far, margin_frr, method=method, progress=not quiet,
                                             target_fpir=target_fpir, split=split)
        if keep_database:
            click.echo(f"scratch database kept: {url}")
    click.echo(result.load.format())
    click.echo(result.format())
    if plot:
        plot_tpir_fpir(result, plot)
        click.echo(f"TPIR-FPIR curves: {plot}")
    if roc_plot:
        plot_roc(result.calibration, roc_plot)
        click.echo(f"ROC curve: {roc_plot}")
