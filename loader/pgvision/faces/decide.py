"""The open-set decision rule in numpy (the same as SQL ``pgvision.identify`` v2), and the
one-identity-per-photo assignment.

Rule v2 (``sql/functions/_identify.v2.sql``): an identity's distance to a probe is the
smaller of (a) the distance to its nearest gallery face and (b) the distance to the mean of
its gallery embeddings; identities are ranked by it; the best one matches when its distance
is <= ``threshold`` and its margin to the second one is >= ``min_margin``. Calibration
(:mod:`pgvision.faces.calibrate`) and evaluation (:mod:`pgvision.evaluate_faces`) use this
module, so that the threshold is measured on exactly the distance SQL thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgvision.errors import InvalidValue


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances between rows of ``a`` (P, D) and ``b`` (G, D), float64 (P, G).

    ``l2``: Euclidean (pgvector ``<->``); ``cosine``: 1 - cos (``<=>``, 0..2);
    ``inner_product``: negative dot product (``<#>``).

    Raises:
        ValueError: unknown metric.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "l2":
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.sqrt(np.maximum(sq, 0.0))
    if metric == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return 1.0 - an @ bn.T
    if metric == "inner_product":
        return -(a @ b.T)
    raise InvalidValue(f"metric must be l2, cosine or inner_product, got {metric!r}")


def rowwise_distances(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distance between ``a[i]`` and ``b[i]`` for each row, float64 (N,)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if metric == "l2":
        return np.linalg.norm(a - b, axis=1)
    if metric == "cosine":
        return 1.0 - (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    if metric == "inner_product":
        return -(a * b).sum(1)
    raise InvalidValue(f"metric must be l2, cosine or inner_product, got {metric!r}")


def identity_distances(probes: np.ndarray, gallery: np.ndarray, labels: np.ndarray, metric: str,
                       probe_index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rule-v2 distance of every probe to every identity of the gallery.

    Args:
        probes: (P, D) embeddings.
        gallery: (G, D) embeddings of enrolled faces; labels: (G,) their identity ids.
        metric: the model's metric.
        probe_index: (P,) index into ``gallery`` of each probe when probes are gallery faces
            (leave-one-out: the probe is left out of its own identity's nearest face and
            mean), -1 for probes outside the gallery; None = all outside.

    Returns:
        (identities (I,), distances (P, I) float64); an identity whose only face is the
        probe itself gets +inf.
    """
    labels = np.asarray(labels)
    ids = np.unique(labels)
    probe_index = np.full(len(probes), -1) if probe_index is None else np.asarray(probe_index)
    face_d = pairwise_distances(probes, gallery, metric)
    rows = np.arange(len(probes))
    inside = probe_index >= 0
    face_d[rows[inside], probe_index[inside]] = np.inf
    out = np.empty((len(probes), len(ids)))
    for j, ident in enumerate(ids):
        members = np.flatnonzero(labels == ident)
        nearest = face_d[:, members].min(axis=1)
        sums = gallery[members].astype(np.float64).sum(0)
        n = len(members)
        t_d = pairwise_distances(probes, (sums / n)[None, :], metric)[:, 0]
        own = np.flatnonzero(inside & np.isin(probe_index, members))
        if len(own) and n == 1:
            t_d[own] = np.inf
        elif len(own):  # leave-one-out mean for probes of this identity
            loo = (sums[None, :] - gallery[probe_index[own]]) / (n - 1)
            t_d[own] = rowwise_distances(probes[own], loo, metric)
        out[:, j] = np.minimum(nearest, t_d)
    return ids, out


@dataclass(frozen=True)
class Ranked:
    """Best and second-best identity of each probe.

    Attributes:
        best: (P,) identity id of the best identity; distance: (P,) its distance;
        margin: (P,) second-best distance minus best (inf when there is only one identity).
    """

    best: np.ndarray
    distance: np.ndarray
    margin: np.ndarray

    def accepted(self, threshold: float, min_margin: float = 0.0) -> np.ndarray:
        """(P,) bool: the rule's match decision for the best identity."""
        return (self.distance <= threshold) & (self.margin >= min_margin)


def rank_identities(ids: np.ndarray, distances: np.ndarray) -> Ranked:
    """Best identity, its distance and its margin for each row of ``distances`` (P, I)."""
    order = np.argsort(distances, axis=1, kind="stable")
    rows = np.arange(len(distances))
    d1 = distances[rows, order[:, 0]]
    d2 = distances[rows, order[:, 1]] if distances.shape[1] > 1 else np.full(len(distances), np.inf)
    return Ranked(ids[order[:, 0]], d1, d2 - d1)


def assign_identities(costs: np.ndarray, acceptable: np.ndarray, unknown_cost: float) -> np.ndarray:
    """One identity per face of a photo, never one identity to two faces.

    A linear assignment (Hungarian method, ``scipy.optimize.linear_sum_assignment``) over
    the faces x (identities + one "unknown" slot per face): a face may take an acceptable
    identity at its distance, or stay unknown at ``unknown_cost`` (the threshold). The
    minimum total cost is the maximum total slack ``threshold - distance`` over the matches,
    the usual dummy-column formulation of an assignment with rejection. If two faces are
    both closest to Ann, the assignment gives Ann to one and the other its next acceptable
    identity, or unknown.

    Args:
        costs: (F, I) distances of each face to each candidate identity (inf = not a candidate).
        acceptable: (F, I) bool, pairs the rule allows (distance <= threshold, margin...).
        unknown_cost: cost of leaving a face unknown (the threshold).

    Returns:
        (F,) int: the column assigned to each face, -1 for unknown.
    """
    from scipy.optimize import linear_sum_assignment

    n_faces, n_ids = costs.shape
    if n_faces == 0 or n_ids == 0:
        return np.full(n_faces, -1)
    forbidden = 1e9
    ok = acceptable & np.isfinite(costs)
    matrix = np.full((n_faces, n_ids + n_faces), forbidden)
    matrix[:, :n_ids] = np.where(ok, costs, forbidden)
    matrix[np.arange(n_faces), n_ids + np.arange(n_faces)] = unknown_cost
    rows, cols = linear_sum_assignment(matrix)
    out = np.full(n_faces, -1)
    for r, c in zip(rows, cols, strict=True):
        if c < n_ids and ok[r, c]:
            out[r] = c
    return out
