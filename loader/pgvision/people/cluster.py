"""A clustering pass from the client: ``cluster_start``, then ``cluster_step`` per batch.

Each step is its own transaction (the connection is in autocommit mode), so a client killed
at any point leaves whole batches only, and the next run resumes the open pass from its
cursor (``cluster_start`` returns it). The rule itself is SQL's (sql/functions/
_cluster_assign.v1.sql); docs/people.md describes it and the defaults.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from tqdm import tqdm

from pgvision.errors import InvalidValue

MODES = ("incremental", "full")


@dataclass
class PassResult:
    """A finished clustering pass (a row of ``pgvision.cluster_passes``).

    Attributes:
        pass_id, model, mode: which pass.
        max_distance: distance of a close pair, in the model's metric (dlib: L2).
        min_faces, neighbours: the core-face rule's size and the k asked per face.
        resumed: the pass was open already (a rerun after an interruption).
        faces: faces it went through; assigned: faces given a person; created: new people;
        unassigned: faces left without a person (retried later).
        seconds: wall time of this run.
    """

    pass_id: int
    model: str
    mode: str
    max_distance: float
    min_faces: int
    neighbours: int
    resumed: bool
    faces: int
    assigned: int
    created: int
    unassigned: int
    seconds: float

    def format(self) -> str:
        """One line, e.g. ``full pass 3 (dlib, max_distance 0.5000, min_faces 3): 800 faces, ...``."""
        return (
            f"{self.mode} pass {self.pass_id}{' (resumed)' if self.resumed else ''} of model {self.model} "
            f"(max_distance {self.max_distance:.4f}, min_faces {self.min_faces}, neighbours {self.neighbours}): "
            f"{self.faces} faces, {self.assigned} assigned, {self.created} new people, "
            f"{self.unassigned} unassigned; {self.seconds:.1f} s"
        )

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def run_pass(
    conn: psycopg.Connection,
    model: str | None = None,
    mode: str = "incremental",
    max_distance: float | None = None,
    min_faces: int = 3,
    neighbours: int = 16,
    batch_size: int = 1000,
    progress: bool = True,
) -> PassResult:
    """Run (or resume) a clustering pass of face model ``model`` to its end.

    Args:
        conn: autocommit psycopg connection (each batch commits on its own).
        model: face model name; None = the default face model.
        mode: ``incremental`` (unassigned faces join or form people) or ``full`` (every
            automatic person again; named and hand-touched people keep their faces).
        max_distance: distance of a close pair in the model's metric; None = the model's
            default (calibrated threshold x 1.1, else dlib 0.50 / facenet 0.25).
        min_faces: faces within max_distance that make a core face and a new person.
        neighbours: k asked from the ANN index per face.
        batch_size: faces per transaction.
        progress: show a tqdm bar (faces).

    Returns:
        :class:`PassResult`.

    Raises:
        pgvision.errors.InvalidValue: unknown mode (before anything runs).
        psycopg.Error: SQL refused an argument (22023 and friends, one-line message) or the
            server was lost; the batches committed stay and a rerun resumes.
    """
    if mode not in MODES:
        raise InvalidValue(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    t0 = time.perf_counter()
    row = conn.execute(
        "SELECT pass_id, phase, total, processed, (started_at < now()) AS resumed, "
        "max_distance, min_faces, neighbours, (SELECT name FROM pgvision.models m WHERE m.model_id = p.model_id) "
        "FROM pgvision.cluster_start(%s::text, %s::text, %s::real, %s::integer, %s::integer) p",
        (model, mode, max_distance, min_faces, neighbours),
    ).fetchone()
    pass_id, phase, total, processed, resumed, dist, minf, k, name = row
    bar = tqdm(
        total=total, initial=min(processed, total), unit="face", desc=f"{mode} clustering {name}", disable=not progress
    )
    while phase not in ("done", "abandoned"):
        step = conn.execute(
            "SELECT phase, processed FROM pgvision.cluster_step(%s::bigint, %s::integer)", (pass_id, batch_size)
        ).fetchone()
        phase = step[0]
        bar.update(max(0, min(step[1], bar.total) - bar.n) if phase != "done" else bar.total - bar.n)
        if phase == "assign":
            bar.set_postfix_str("assigning")
    bar.close()
    final = conn.execute(
        "SELECT total, assigned, created, coalesce(unassigned, 0) FROM pgvision.cluster_passes WHERE pass_id = %s",
        (pass_id,),
    ).fetchone()
    return PassResult(
        pass_id, name, mode, float(dist), minf, k, bool(resumed), *final, seconds=time.perf_counter() - t0
    )
