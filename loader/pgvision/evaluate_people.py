"""Clustering evaluation on labelled photos (``pgvision eval cluster DIR``).

Photos ``DIR/<person>/*`` are loaded with ``faces load`` and *no* identity (the folder names
never reach the database), clustered by a full SQL pass (:func:`pgvision.people.cluster.run_pass`)
and scored against the folders: the largest face of each photo is the labelled one (LFW
photos also hold bystanders; every face is clustered, only labelled faces are scored).
Scores (:mod:`pgvision.people.scores`): BCubed and pairwise precision / recall / F1, people
found (clusters holding a labelled face) against true people, and the share of labelled
faces left unassigned. ``sweep`` re-runs the full pass at other max distances for the curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from pgvision.faces.pipeline import FacePipeline
from pgvision.load_faces import FaceLoadSummary, load_faces
from pgvision.people.cluster import PassResult, run_pass
from pgvision.people.scores import ClusterScores, score_clustering
from pgvision.review.page import path_of


@dataclass
class ClusterRun:
    """One full pass and its scores."""

    run: PassResult
    scores: ClusterScores

    def as_dict(self) -> dict:
        return {"pass": self.run.as_dict(), "scores": self.scores.as_dict()}


@dataclass
class ClusterEval:
    """What ``eval cluster`` measured.

    Attributes:
        load: the face load's summary.
        default: the pass with the given (or default) max distance and its scores.
        sweep: one run per swept max distance, in the order given.
    """

    load: FaceLoadSummary
    default: ClusterRun
    sweep: list[ClusterRun] = field(default_factory=list)

    def format(self) -> str:
        s, r = self.default.scores, self.default.run
        lines = [
            self.load.format(),
            r.format(),
            (
                f"labelled faces {s.items} ({s.labels} people): BCubed precision {s.bcubed_precision:.4f}, "
                f"recall {s.bcubed_recall:.4f}, F1 {s.bcubed_f1:.4f}; pairwise precision {s.pairwise_precision:.4f}, "
                f"recall {s.pairwise_recall:.4f}, F1 {s.pairwise_f1:.4f}"
            ),
            (
                f"people found {s.clusters} (true {s.labels}); unassigned {s.unassigned} of {s.items} "
                f"({s.unassigned / s.items:.1%})"
            ),
        ]
        if self.sweep:
            lines.append(
                f"{'max_distance':>12}{'BCubed P':>10}{'BCubed R':>10}{'F1':>8}{'people':>8}{'unassigned':>12}"
            )
            for x in self.sweep:
                lines.append(
                    f"{x.run.max_distance:>12.4f}{x.scores.bcubed_precision:>10.4f}{x.scores.bcubed_recall:>10.4f}"
                    f"{x.scores.bcubed_f1:>8.4f}{x.scores.clusters:>8}{x.scores.unassigned / x.scores.items:>12.1%}"
                )
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "default": self.default.as_dict(),
            "sweep": [x.as_dict() for x in self.sweep],
            "photos": self.load.photos,
            "faces": self.load.faces,
        }


def labelled_faces(conn: psycopg.Connection, detector: str) -> list[tuple[int, str]]:
    """(face_id, folder name) of the largest face of every photo, in face_id order."""
    rows = conn.execute(
        "SELECT DISTINCT ON (f.image_id) f.face_id, i.uri "
        "FROM pgvision.faces f JOIN pgvision.images i USING (image_id) WHERE f.detector = %s "
        "ORDER BY f.image_id, (f.box_right - f.box_left) * (f.box_bottom - f.box_top) DESC, f.face_id",
        (detector,),
    ).fetchall()
    return sorted((face_id, Path(path_of(uri)).parent.name) for face_id, uri in rows)


def score_current(conn: psycopg.Connection, labelled: list[tuple[int, str]]) -> ClusterScores:
    """Scores of the people now stored, over ``labelled`` faces."""
    person = dict(
        conn.execute(
            "SELECT face_id, identity_id FROM pgvision.faces WHERE face_id = ANY(%s)", ([f for f, _ in labelled],)
        ).fetchall()
    )
    return score_clustering([lab for _, lab in labelled], [person[f] for f, _ in labelled])


def evaluate_clustering(
    conn: psycopg.Connection,
    root: str | Path,
    pipeline: FacePipeline,
    max_distance: float | None = None,
    min_faces: int = 3,
    neighbours: int = 16,
    sweep: list[float] | tuple = (),
    progress: bool = True,
) -> ClusterEval:
    """Load ``root``'s photos without identities, cluster them in full, score against the folders.

    Args:
        conn: autocommit connection to a scratch database (the caller's to drop).
        root: folder of ``<person>/<photo>`` files.
        pipeline: detector and face model.
        max_distance, min_faces, neighbours: the clustering settings (None = the model's default).
        sweep: further max distances to run a full pass at, for the curve.
        progress: progress bars.

    Returns:
        :class:`ClusterEval`; its ``default`` run is the last pass, so the database ends
        with the people of the given settings.
    """
    load = load_faces(conn, [root], pipeline, identity_from="none", progress=progress)
    labelled = labelled_faces(conn, pipeline.detector.detector)
    runs = []
    for d in sweep:
        run = run_pass(conn, pipeline.model.name, "full", d, min_faces, neighbours, progress=False)
        runs.append(ClusterRun(run, score_current(conn, labelled)))
    run = run_pass(conn, pipeline.model.name, "full", max_distance, min_faces, neighbours, progress=progress)
    return ClusterEval(load, ClusterRun(run, score_current(conn, labelled)), runs)


def plot_sweep(result: ClusterEval, path: str) -> None:
    """BCubed precision and recall and the unassigned share against max distance, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [x.run.max_distance for x in result.sweep]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, [x.scores.bcubed_precision for x in result.sweep], "o-", label="BCubed precision")
    ax.plot(xs, [x.scores.bcubed_recall for x in result.sweep], "s-", label="BCubed recall")
    ax.plot(xs, [x.scores.unassigned / x.scores.items for x in result.sweep], "^--", label="unassigned share")
    ax.axvline(result.default.run.max_distance, color="grey", lw=0.8, ls=":", label="default")
    ax.set_xlabel(f"max_distance ({result.default.run.model})")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    ax.set_title(f"clustering {result.default.scores.items} labelled faces, {result.default.scores.labels} people")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
