"""Identify the faces of a probe photo through SQL ``pgvision.identify`` (``pgvision identify``).

Each face of the photo is embedded here (nothing is stored) and sent to
``pgvision.identify``, which returns its candidate identities with the rule-v2 distance,
the margin and the match decision. Then one assignment over all faces of the photo
(:func:`pgvision.faces.decide.assign_identities`) makes sure no identity is given to two
faces of the same photo: the face that fits an identity better keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psycopg

from pgvision.faces.decide import assign_identities
from pgvision.faces.pipeline import FacePipeline, read_photo
from pgvision.registry import get_model


@dataclass
class Candidate:
    """One row of ``pgvision.identify``."""

    identity_id: int
    name: str
    distance: float
    similarity: float
    margin: float | None
    is_match: bool


@dataclass
class FaceVerdict:
    """The decision for one face of the probe photo.

    Attributes:
        box: (left, top, right, bottom) pixels; detector_score: the detector's confidence.
        name, identity_id: the identity given (None = unknown).
        distance, similarity, margin: of the identity given, else of the best candidate.
        candidates: what SQL returned for this face, best first.
        reassigned: True when SQL's best identity went to another face of the photo.
    """

    box: tuple[int, int, int, int]
    detector_score: float
    name: str | None
    identity_id: int | None
    distance: float | None
    similarity: float | None
    margin: float | None
    candidates: list[Candidate] = field(default_factory=list)
    reassigned: bool = False


def query_identify(conn: psycopg.Connection, embedding: np.ndarray, model: str, threshold: float | None,
                   min_margin: float | None, candidates: int) -> list[Candidate]:
    """Call ``pgvision.identify`` for one embedding (D,) float32."""
    rows = conn.execute(
        "SELECT * FROM pgvision.identify(%s::vector, model => %s, threshold => %s::real, candidates => %s,"
        " min_margin => %s::real)",
        (np.asarray(embedding, dtype=np.float32), model, threshold, candidates, min_margin),
    ).fetchall()
    return [Candidate(*r) for r in rows]


def decide_photo(per_face: list[list[Candidate]], threshold: float, min_margin: float) -> list[tuple[int | None, bool]]:
    """Assign identities to the faces of one photo.

    A (face, identity) pair is acceptable when SQL's rule would accept that identity for the
    face: distance <= threshold and the gap to the face's next other candidate >= min_margin
    (for the best candidate this is SQL's own ``is_match``).

    Returns:
        Per face: (index into its candidate list or None for unknown, reassigned flag).
    """
    names = sorted({c.identity_id for cands in per_face for c in cands})
    col = {ident: j for j, ident in enumerate(names)}
    costs = np.full((len(per_face), len(names)), np.inf)
    ok = np.zeros_like(costs, dtype=bool)
    for i, cands in enumerate(per_face):
        for c in cands:
            costs[i, col[c.identity_id]] = c.distance
            others = [o.distance for o in cands if o.identity_id != c.identity_id]
            gap = (min(others) - c.distance) if others else np.inf
            ok[i, col[c.identity_id]] = c.distance <= threshold and gap >= min_margin
    chosen = assign_identities(costs, ok, unknown_cost=threshold)
    out = []
    for i, cands in enumerate(per_face):
        if chosen[i] < 0:
            out.append((None, bool(cands and cands[0].is_match)))
            continue
        ident = names[chosen[i]]
        k = next(k for k, c in enumerate(cands) if c.identity_id == ident)
        out.append((k, k != 0))
    return out


def identify_photo(conn: psycopg.Connection, path: str | Path, pipeline: FacePipeline,
                   threshold: float | None = None, min_margin: float | None = None,
                   candidates: int = 5) -> list[FaceVerdict]:
    """Identify every face of one photo, largest first.

    Args:
        conn: psycopg connection.
        path: the probe photo.
        pipeline: detector + face model (the model must be registered and enrolled).
        threshold, min_margin: override the model's (calibrated) values; distances in its metric.
        candidates: identities asked from SQL per face (1..1000).

    Returns:
        One :class:`FaceVerdict` per face (empty when there is none).

    Raises:
        pgvision.errors.UnknownModel: the model is not registered (nothing loaded with it).
        pgvision.images.ImageSkipped, OSError: the photo cannot be read.
        psycopg.Error: from SQL (e.g. the model has no threshold).
    """
    row = get_model(conn, pipeline.model.name)
    thr = row["threshold"] if threshold is None else threshold
    mm = row["min_margin"] if min_margin is None else min_margin
    photo = read_photo(path)
    faces, emb = pipeline.embed_photo(photo.pixels)
    per_face = [query_identify(conn, e, pipeline.model.name, threshold, min_margin, candidates) for e in emb]
    if thr is None:  # SQL raised already if so; keep mypy calm
        thr = np.inf
    decisions = decide_photo(per_face, float(thr), float(mm or 0.0))
    verdicts = []
    for face, cands, (k, flag) in zip(faces, per_face, decisions, strict=True):
        shown = cands[k] if k is not None else (cands[0] if cands else None)
        verdicts.append(FaceVerdict(
            box=face.box, detector_score=face.score,
            name=cands[k].name if k is not None else None,
            identity_id=cands[k].identity_id if k is not None else None,
            distance=shown.distance if shown else None, similarity=shown.similarity if shown else None,
            margin=shown.margin if shown else None, candidates=cands, reassigned=flag,
        ))
    return verdicts
