"""Threshold calibration on the enrolled gallery (``pgvision calibrate``).

Published thresholds (dlib L2 0.6, DeepFace's FaceNet cosine 0.30/0.40) are set for
one-to-one verification on LFW pairs. Open-set search compares a stranger with every
enrolled identity, so the false matches add up: on LFW with 20 enrolled people, dlib's 0.6
accepted a third of the strangers (issue 4). The threshold is therefore measured on the
user's own gallery, for the distance the SQL rule actually thresholds:

- genuine comparisons: each enrolled face against its own identity, leave-one-out (its
  nearest other face, and the mean of the others: rule v2, :mod:`pgvision.faces.decide`),
  for identities with at least 2 faces;
- impostor comparisons: each enrolled face against every other identity.

The threshold is the largest distance whose false accept rate (FAR, impostor comparisons
at or under it) is at most the target FAR; FRR = genuine comparisons over it; TAR = 1 - FRR.
How that distance is found (``method``):

- ``empirical``: the order statistic of the impostor distances. Sound when the target FAR
  leaves at least :data:`MIN_TAIL` impostor comparisons under the threshold.
- ``normal``: a Gaussian fitted to all impostor distances (mean, standard deviation), its
  ``target_far`` quantile: a parametric model of the impostor scores uses every comparison
  instead of the one or two most extreme ones. On LFW with 20 enrolled people
  (1,900 impostor comparisons, so FAR 0.001 rests on 1 or 2 of them) the empirical
  threshold let 9.5-11.8 % of the strangers in, the Gaussian one 1.3-1.8 % (dlib).
- ``auto`` (default): ``normal`` when ``target_far * impostor comparisons < MIN_TAIL``,
  else ``empirical``.

Whatever the method, the FAR, FRR and TAR reported are counted on the comparisons.
A stranger probed against N identities is falsely accepted with probability about
``1 - (1 - FAR)^N`` (the FPIR), so the target FAR should shrink as the gallery grows.

``min_margin`` (the second condition of the rule) is set from the genuine leave-one-out
margins: the ``margin_frr`` quantile of them (default 0: no margin condition; see
docs/faces.md for why the default is off on LFW).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import psycopg

from pgvision.faces.decide import identity_distances, rank_identities
from pgvision.registry import get_model


#: Impostor comparisons that must fall under an empirical threshold for it to be trusted.
MIN_TAIL = 10
METHODS = ("auto", "empirical", "normal")


class CalibrationError(ValueError):
    """The gallery cannot calibrate a threshold (too few identities or faces)."""


@dataclass
class Calibration:
    """The outcome of a calibration.

    Attributes:
        model: model name; metric: its metric.
        threshold: chosen maximum distance (float32-representable, as stored).
        method: ``empirical`` or ``normal`` (what ``auto`` chose).
        min_margin: chosen minimum margin.
        target_far, far, frr, tar: the target and the measured rates at ``threshold``.
        genuine_pairs, impostor_pairs: how many comparisons of each kind were counted.
        identities, faces: gallery size.
        genuine, impostor: the distances (for the ROC curve).
        table: rows (label, threshold, far, frr, tar) at several operating points.
    """

    model: str
    metric: str
    threshold: float
    method: str
    min_margin: float
    target_far: float
    far: float
    frr: float
    tar: float
    genuine_pairs: int
    impostor_pairs: int
    identities: int
    faces: int
    genuine: np.ndarray = field(repr=False)
    impostor: np.ndarray = field(repr=False)
    table: list[tuple[str, float, float, float, float]] = field(default_factory=list)

    def expected_fpir(self, identities: int | None = None) -> float:
        """``1 - (1 - FAR)^N``: the chance a stranger matches one of N identities."""
        return 1.0 - (1.0 - self.far) ** (identities or self.identities)


def fetch_gallery(conn: psycopg.Connection, model_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Enrolled faces of a model: (embeddings (G, D) float32, identity ids (G,), face ids (G,))."""
    rows = conn.execute(
        """
        SELECT f.face_id, f.identity_id, e.embedding
        FROM pgvision.faces f
        JOIN pgvision.face_embeddings e ON e.face_id = f.face_id AND e.model_id = %s
        WHERE f.identity_id IS NOT NULL
        ORDER BY f.face_id
        """,
        (model_id,),
    ).fetchall()
    if not rows:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    emb = np.stack([np.asarray(r[2].to_numpy() if hasattr(r[2], "to_numpy") else r[2], dtype=np.float32) for r in rows])
    return emb, np.array([r[1] for r in rows], dtype=np.int64), np.array([r[0] for r in rows], dtype=np.int64)


def threshold_at_far(impostor: np.ndarray, target_far: float, method: str = "empirical") -> float:
    """Distance threshold for a target FAR, as float32 (how it is stored).

    ``empirical``: the largest t with ``mean(impostor <= t) <= target_far``. ``normal``: the
    ``target_far`` quantile of a Gaussian fitted to the impostor distances.

    Raises:
        ValueError: target_far outside (0, 1), or unknown method.
    """
    if not 0 < target_far < 1:
        raise ValueError(f"target FAR must be between 0 and 1 (exclusive), got {target_far}")
    if method not in ("empirical", "normal"):
        raise ValueError(f"method must be empirical or normal, got {method!r}")
    imp = np.sort(np.asarray(impostor, dtype=np.float64))
    if method == "normal":
        from scipy.stats import norm

        return float(np.float32(norm.ppf(target_far, imp.mean(), imp.std(ddof=1))))
    k = int(np.floor(target_far * len(imp)))  # impostors that may be accepted
    if k >= len(imp):
        return float(np.float32(imp[-1]))
    t = np.float32(imp[k])
    while float(t) >= imp[k]:  # strictly under the (k+1)-th impostor, as stored (real)
        t = np.nextafter(t, np.float32(-np.inf))
    return float(t)


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(FAR, FRR, TAR) at ``threshold`` (accept when distance <= threshold)."""
    far = float(np.mean(impostor <= threshold)) if len(impostor) else 0.0
    tar = float(np.mean(genuine <= threshold)) if len(genuine) else 0.0
    return far, 1.0 - tar, tar


def calibrate(conn: psycopg.Connection, model: str, target_far: float = 0.001, margin_frr: float = 0.0,
              published_threshold: float | None = None, method: str = "auto") -> Calibration:
    """Measure FAR/FRR/TAR on the gallery and choose the threshold (nothing stored).

    Args:
        conn: psycopg connection.
        model: face model name.
        target_far: highest acceptable false accept rate per comparison (default 0.001).
        margin_frr: share of genuine comparisons the margin condition may reject
            (0 = no margin condition).
        published_threshold: added to the table as the "published" row when given.
        method: ``auto`` | ``empirical`` | ``normal`` (module docstring).

    Raises:
        pgvision.errors.UnknownModel: no such model.
        CalibrationError: fewer than 2 identities, or no identity with 2 faces.
    """
    row = get_model(conn, model)
    if row["kind"] != "face":
        raise CalibrationError(f"model {model!r} is an image model; calibrate a face model (dlib, facenet)")
    emb, labels, _ = fetch_gallery(conn, row["model_id"])
    ids, counts = np.unique(labels, return_counts=True)
    if len(ids) < 2 or counts.max(initial=0) < 2:
        raise CalibrationError(
            f"model {model!r} has {len(labels)} enrolled faces of {len(ids)} identities; calibration needs at least "
            "2 identities and one with 2 or more faces: pgvision enroll NAME IMAGE... (or faces load --identity-from parent-dir)"
        )
    metric = row["metric"]
    ident, dist = identity_distances(emb, emb, labels, metric, probe_index=np.arange(len(emb)))
    own = labels[:, None] == ident[None, :]
    multi = np.isin(labels, ids[counts >= 2])
    genuine = dist[own & multi[:, None]]
    impostor = dist[~own]
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "auto":
        method = "normal" if target_far * len(impostor) < MIN_TAIL else "empirical"
    threshold = threshold_at_far(impostor, target_far, method)
    far, frr, tar = rates(genuine, impostor, threshold)
    min_margin = 0.0
    if margin_frr > 0:
        ranked = rank_identities(ident, dist)
        ok = multi & (ranked.best == labels) & np.isfinite(ranked.margin)
        if ok.any():
            min_margin = float(np.float32(np.quantile(ranked.margin[ok], margin_frr)))
    table = []
    for f in (0.0001, 0.001, 0.01, 0.05):
        for m in ("empirical", "normal"):
            t = threshold_at_far(impostor, f, m)
            table.append((f"FAR {f:g} {m}", t, *rates(genuine, impostor, t)))
    if published_threshold is not None:
        table.append(("published", published_threshold, *rates(genuine, impostor, published_threshold)))
    return Calibration(model, metric, threshold, method, min_margin, target_far, far, frr, tar, len(genuine), len(impostor),
                       len(ids), len(labels), genuine, impostor, table)


def store_calibration(conn: psycopg.Connection, cal: Calibration) -> int:
    """Set the model's threshold and min_margin and append the calibration to its history.

    Returns:
        The new ``pgvision.calibrations.calibration_id``.
    """
    with conn.transaction():
        model_id = get_model(conn, cal.model)["model_id"]
        conn.execute("UPDATE pgvision.models SET threshold = %s, min_margin = %s WHERE model_id = %s",
                     (cal.threshold, cal.min_margin, model_id))
        return conn.execute(
            """
            INSERT INTO pgvision.calibrations (model_id, threshold, min_margin, target_far, far, frr, tar,
                                               genuine_pairs, impostor_pairs)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING calibration_id
            """,
            (model_id, cal.threshold, cal.min_margin, cal.target_far, cal.far, cal.frr, cal.tar,
             cal.genuine_pairs, cal.impostor_pairs),
        ).fetchone()[0]


def plot_roc(cal: Calibration, path: str) -> None:
    """Draw the ROC curve (TAR against FAR, log FAR axis) with the chosen point, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    thresholds = np.unique(np.concatenate([cal.genuine, cal.impostor]))
    far = np.searchsorted(np.sort(cal.impostor), thresholds, side="right") / max(len(cal.impostor), 1)
    tar = np.searchsorted(np.sort(cal.genuine), thresholds, side="right") / max(len(cal.genuine), 1)
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    floor = 1.0 / max(len(cal.impostor), 1)
    ax.plot(np.maximum(far, floor / 2), tar, lw=1.6, label=f"{cal.model} (gallery leave-one-out, rule v2)")
    ax.scatter([max(cal.far, floor / 2)], [cal.tar], color="C3", zorder=3,
               label=f"threshold {cal.threshold:.4f} ({cal.method}): FAR {cal.far:.4f}, TAR {cal.tar:.3f}")
    ax.axvline(cal.target_far, color="0.6", ls="--", lw=1, label=f"target FAR {cal.target_far:g}")
    ax.set_xscale("log")
    ax.set_xlabel("FAR (impostor comparisons accepted)")
    ax.set_ylabel("TAR (genuine comparisons accepted)")
    ax.set_title(f"ROC on the enrolled gallery: {cal.identities} identities, {cal.faces} faces\n"
                 f"{cal.genuine_pairs} genuine, {cal.impostor_pairs} impostor comparisons", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
