"""Threshold calibration on the enrolled gallery (``pgvision calibrate``).

Two targets:

- **open-set, per search** (``target_fpir``, the default, 0.01): the chance that a stranger
  (someone never enrolled) is accepted as anyone, the FPIR of NIST FRVT/FRTE 1:N
  (NISTIR 8271) and ISO/IEC 19795-1's open-set terms (FPIR; FNIR = 1 - TPIR). See
  :func:`score_open_set` and :func:`threshold_at_fpir`.
- **per comparison** (``target_far``): the false accept rate of one identity-vs-face
  comparison, described below (kept for users who think in verification terms).

Open-set calibration, leave one person out, through SQL itself: each enrolled person in
turn is made a stranger (inside a transaction that is rolled back: their faces' identity
is set to NULL) and each of their gallery faces is searched with ``pgvision.identify_face``
against everyone else, so the stranger scores (best identity's distance and margin) come
from exactly the rule, index and parameters a deployment runs. Genuine scores are
``identify_face`` of each gallery face with the full gallery (leave-one-face-out, which the
function already does). How the threshold is found (``method``):

- ``empirical``: the largest distance at which at most ``target_fpir`` of the stranger
  searches would be accepted (their order statistic). Sound once :data:`MIN_TAIL` stranger
  searches fall under the target, i.e. from ``MIN_TAIL / target_fpir`` of them (1,000 for 0.01).
- ``normal`` (what ``auto`` takes below that): the open-set target turned into a
  per-comparison one. A stranger is compared with each of the N enrolled identities and is
  accepted when any comparison passes, so with a per-comparison false match rate FMR(t),
  ``FPIR(t) = 1 - (1 - FMR(t))^N`` (independent comparisons; FPIR ~ N x FMR for small rates,
  the relation NIST FRVT 1:N, NISTIR 8271 sec. 3, draws between 1:N and 1:1 error rates).
  The threshold is the ``1 - (1 - target_fpir)^(1/N)`` quantile of a Gaussian fitted to
  *every* impostor comparison of the gallery (each face against each other identity, the
  SQL rule's distance), as the per-comparison calibration below does. A gallery of P people
  with F faces each gives P x F stranger searches but P x F x (P - 1) impostor comparisons:
  the fit rests on every comparison instead of on the one or two closest look-alike pairs
  that set the tail of the P x F best-of-(P - 1) stranger distances. (The earlier estimate,
  a Gaussian fitted to those best distances, was off by 5x in either direction on two
  halves of LFW with 20 people enrolled: FPIR 0.003 and 0.048 for a target of 0.01,
  docs/faces.md.) N is the whole gallery, as a stranger meets it in deployment.

Expected FPIR (strangers accepted) and TPIR (genuine: right identity ranked first AND
accepted) are counted on the SQL searches at the chosen threshold, whichever method chose
it. With S stranger scores the smallest FPIR that can be measured is
about 1/S, and zero false accepts among S only bound the FPIR by 3/S at 95 % confidence
(the "rule of three", Hanley & Lippman-Hand, JAMA 249(13):1743, 1983): a target FPIR is
called *supported* when S >= 3 / target_fpir, and the calibration says how many more
people to enroll otherwise.

Published thresholds (dlib L2 0.6, DeepFace's FaceNet cosine 0.30/0.40) are set for
one-to-one verification on LFW pairs. Open-set search compares a stranger with every
enrolled identity, so the false matches add up: on LFW with 20 enrolled people, dlib's 0.6
accepted a third of the strangers (docs/faces.md). The threshold is therefore measured on the
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

``min_margin`` (the second condition of the rule) is set from the SQL genuine searches'
margins (those with the right identity first): the ``margin_frr`` quantile of them (default 0: no margin condition; see
docs/faces.md for why the default is off on LFW).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import psycopg

from pgvision.errors import InvalidValue, PgvisionError
from pgvision.faces.decide import identity_distances
from pgvision.registry import get_model

#: Impostor comparisons (or strangers) that must fall under an empirical threshold for it to be trusted.
MIN_TAIL = 10
METHODS = ("auto", "empirical", "normal")
#: Candidate identities asked from ``identify_face`` while scoring (its default, as ``pgvision identify``).
CANDIDATES = 5


class CalibrationError(PgvisionError, ValueError):
    """The gallery cannot calibrate a threshold (too few identities or faces)."""


@dataclass
class Calibration:
    """The outcome of a calibration.

    Attributes:
        model: model name; metric: its metric.
        threshold: chosen maximum distance (float32-representable, as stored).
        method: ``empirical`` or ``normal`` (what ``auto`` chose).
        min_margin: chosen minimum margin.
        target_far, far, frr, tar: the per-comparison target (None when the FPIR target chose
            the threshold) and the rates measured on the comparisons at ``threshold``.
        target_fpir, expected_fpir, expected_tpir: the open-set target (None when ``target_far``
            chose the threshold) and the rates counted on the SQL stranger / genuine searches
            at ``threshold`` (``open_set``); strangers = how many stranger searches.
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
    target_far: float | None
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
    target_fpir: float | None = None
    open_set: "OpenSetScores | None" = field(default=None, repr=False)
    expected_fpir: float | None = None
    expected_tpir: float | None = None

    @property
    def strangers(self) -> int:
        """Stranger scores the open-set rates rest on (0 without open-set scores)."""
        return 0 if self.open_set is None else len(self.open_set.stranger_distance)

    def far_fpir(self, identities: int | None = None) -> float:
        """``1 - (1 - FAR)^N``: the chance a stranger matches one of N identities, from the per-comparison FAR."""
        return fpir_from_fmr(self.far, identities or self.identities)

    def target_label(self) -> str:
        """The target that chose the threshold, e.g. ``FAR 0.001`` or ``FPIR 0.01``."""
        return f"FAR {self.target_far:g}" if self.target_far is not None else f"FPIR {self.target_fpir:g}"

    def support_note(self) -> str | None:
        """None when the gallery supports ``target_fpir`` (S >= 3 / target), else the sentence saying what is missing.

        Rule of three: with no stranger accepted among S, the 95 % upper bound of the FPIR is
        about 3/S, so a target FPIR needs ``ceil(3 / target)`` stranger scores.
        """
        if self.target_fpir is None or self.open_set is None:
            return None
        need = math.ceil(round(3.0 / self.target_fpir, 9))
        have = self.strangers
        if have >= need:
            return None
        per_person = have / max(self.identities, 1)
        more = math.ceil((need - have) / max(per_person, 1.0))
        return (f"a target FPIR of {self.target_fpir:g} needs >= {need} stranger probes (rule of three: 3 / FPIR), "
                f"this gallery gives {have} from {self.identities} people: enroll about {more} more people "
                f"(at {per_person:.0f} photos each) to measure it; until then the threshold rests on "
                f"{'a Gaussian fit' if self.method == 'normal' else 'few strangers'}")


@dataclass
class OpenSetScores:
    """SQL ``identify_face`` outcomes for the gallery, leave-one-person-out and leave-one-face-out.

    Attributes:
        stranger_distance, stranger_margin: (S,) float64: the best identity's distance and
            margin (inf when no second identity) for each gallery face of each person, that
            person left out of the gallery (S = faces of all identities).
        genuine_distance, genuine_margin: (G,) float64: the same for each gallery face of an
            identity with >= 2 faces, with the full gallery (the face itself left out).
        genuine_correct: (G,) bool: the best identity is the face's own.
    """

    stranger_distance: np.ndarray
    stranger_margin: np.ndarray
    genuine_distance: np.ndarray
    genuine_margin: np.ndarray
    genuine_correct: np.ndarray

    def rates(self, threshold: float, min_margin: float) -> tuple[float, float]:
        """(expected FPIR, expected TPIR) at ``threshold`` / ``min_margin``, as SQL decides (<= and >=)."""
        acc_s = (self.stranger_distance <= threshold) & (self.stranger_margin >= min_margin)
        acc_g = self.genuine_correct & (self.genuine_distance <= threshold) & (self.genuine_margin >= min_margin)
        fpir = float(acc_s.mean()) if len(acc_s) else 0.0
        tpir = float(acc_g.mean()) if len(acc_g) else 0.0
        return fpir, tpir


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
        raise InvalidValue(f"target FAR must be between 0 and 1 (exclusive), got {target_far}")
    if method not in ("empirical", "normal"):
        raise InvalidValue(f"method must be empirical or normal, got {method!r}")
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


_IDENTIFY_BEST = """
    SELECT f.face_id, f.identity_id, r.identity_id, r.distance, r.margin
    FROM unnest(%s::bigint[]) AS p(face_id)
    JOIN pgvision.faces f ON f.face_id = p.face_id
    LEFT JOIN LATERAL (SELECT * FROM pgvision.identify_face(f.face_id, model => %s, threshold => 0,
                                                            candidates => %s) LIMIT 1) r ON true
    ORDER BY f.face_id
"""


def _best(conn: psycopg.Connection, model: str, face_ids: list[int]) -> list[tuple]:
    return conn.execute(_IDENTIFY_BEST, (face_ids, model, CANDIDATES)).fetchall()


def score_open_set(conn: psycopg.Connection, model: str, face_ids: np.ndarray, labels: np.ndarray) -> OpenSetScores:
    """Stranger and genuine scores of the gallery through SQL ``identify_face`` (nothing stored).

    Strangers: for each enrolled person, in a transaction that is always rolled back
    (``force_rollback``, a savepoint when one is open), that person's faces get
    ``identity_id = NULL`` (out of the gallery: ``_nearest``'s enrolled faces and the
    templates both follow ``identity_id``) and each of those faces is identified against the
    others. This uses exactly the SQL rule (rule, ANN index, ef_search, candidates) without a
    numpy twin that could drift from it, and other sessions never see the change (MVCC). The
    cost: the person's face rows are locked for the few milliseconds of their searches (a
    concurrent enroll or re-assignment of those faces waits). The alternative, calling
    ``pgvision.identify(embedding)`` with the person detached, needs the same update.

    Args:
        conn: psycopg connection (autocommit or not).
        model: face model name.
        face_ids, labels: (F,) int: the gallery faces and their identity ids (:func:`fetch_gallery`).

    Returns:
        :class:`OpenSetScores`; a probe for which SQL found no identity scores distance inf.
    """
    face_ids = np.asarray(face_ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)

    def unpack(rows):
        d = np.array([np.inf if r[3] is None else r[3] for r in rows], dtype=np.float64)
        m = np.array([np.inf if r[4] is None else r[4] for r in rows], dtype=np.float64)
        return d, m, np.array([r[1] == r[2] for r in rows], dtype=bool)

    s_rows = []
    for person in np.unique(labels):
        mine = [int(f) for f in face_ids[labels == person]]
        with conn.transaction(force_rollback=True):
            conn.execute("UPDATE pgvision.faces SET identity_id = NULL WHERE face_id = ANY(%s)", (mine,))
            s_rows += _best(conn, model, mine)
    s_d, s_m, _ = unpack(s_rows)
    ids, counts = np.unique(labels, return_counts=True)
    multi = np.isin(labels, ids[counts >= 2])
    g_d, g_m, g_ok = unpack(_best(conn, model, [int(f) for f in face_ids[multi]]))
    return OpenSetScores(s_d, s_m, g_d, g_m, g_ok)


def fpir_from_fmr(fmr: float, identities: int) -> float:
    """``1 - (1 - FMR)^N``: the chance a stranger matches one of N identities when each
    comparison matches falsely with probability ``fmr``, independently (NISTIR 8271 sec. 3);
    the inverse of :func:`per_comparison_target`. ``fmr`` may be a numpy array."""
    return 1.0 - (1.0 - fmr) ** identities


def per_comparison_target(target_fpir: float, identities: int) -> float:
    """The per-comparison FMR whose N comparisons give ``target_fpir``: ``1 - (1 - target_fpir)^(1/N)``.

    E.g. 0.01 over 20 identities -> 0.000502. Independence of the N comparisons is assumed
    (NISTIR 8271 sec. 3; FPIR ~ N x FMR for small rates).

    Raises:
        ValueError: target_fpir outside (0, 1) or identities < 1.
    """
    if not 0 < target_fpir < 1:
        raise InvalidValue(f"target FPIR must be between 0 and 1 (exclusive), got {target_fpir}")
    if identities < 1:
        raise InvalidValue(f"identities must be at least 1, got {identities}")
    return 1.0 - (1.0 - target_fpir) ** (1.0 / identities)


def threshold_at_fpir_pooled(impostor: np.ndarray, target_fpir: float, identities: int,
                             method: str = "normal") -> float:
    """Threshold for an open-set target from every impostor comparison, as float32.

    Args:
        impostor: distances (float, any shape) of each gallery face to each identity other
            than its own, by the SQL rule; at least 2.
        target_fpir: highest share of strangers accepted as anyone, in (0, 1).
        identities: N, the enrolled identities a stranger is compared with.
        method: ``normal`` (Gaussian fit, for tails thinner than :data:`MIN_TAIL` comparisons)
            or ``empirical``.

    Returns:
        :func:`threshold_at_far` of :func:`per_comparison_target`, at least 0: a Gaussian
        quantile below 0 (a gallery too small or too spread to support the target) gives 0,
        which accepts exact duplicates only (thresholds are CHECKed non-negative, fail closed).
    """
    return max(0.0, threshold_at_far(np.ravel(impostor), per_comparison_target(target_fpir, identities), method))


def threshold_at_fpir(scores: OpenSetScores, target_fpir: float, min_margin: float = 0.0,
                      method: str = "empirical") -> float:
    """Distance threshold at which about ``target_fpir`` of the strangers are accepted, as float32.

    The largest t with ``mean(stranger accepted at t) <= target_fpir``, where a stranger is
    accepted when its distance <= t and its margin >= min_margin (strangers failing the
    margin are never accepted): the ``empirical`` method of the module docstring (for
    ``normal`` see :func:`threshold_at_fpir_pooled`).

    Raises:
        ValueError: target_fpir outside (0, 1), unknown method, or no stranger scores.
    """
    if not 0 < target_fpir < 1:
        raise InvalidValue(f"target FPIR must be between 0 and 1 (exclusive), got {target_fpir}")
    d = np.asarray(scores.stranger_distance, dtype=np.float64)
    if not len(d):
        raise InvalidValue("no stranger scores: calibration needs at least 2 enrolled identities")
    if method != "empirical":
        raise InvalidValue(
            f"method must be empirical (the Gaussian estimate is threshold_at_fpir_pooled), got {method!r}"
        )
    # Strangers that the margin rejects can never be accepted: they sit at +inf for the threshold.
    eligible = np.where(np.asarray(scores.stranger_margin) >= min_margin, d, np.inf)
    k = int(np.floor(target_fpir * len(eligible)))
    if not np.isfinite(np.sort(eligible)[k]):
        # at most k strangers pass the margin: any threshold meets the target; take the largest stranger distance
        finite = d[np.isfinite(d)]
        return float(np.float32(finite.max())) if len(finite) else 0.0
    return threshold_at_far(eligible, target_fpir, "empirical")


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(FAR, FRR, TAR) at ``threshold`` (accept when distance <= threshold)."""
    far = float(np.mean(impostor <= threshold)) if len(impostor) else 0.0
    tar = float(np.mean(genuine <= threshold)) if len(genuine) else 0.0
    return far, 1.0 - tar, tar


def calibrate(conn: psycopg.Connection, model: str, target_fpir: float | None = 0.01, target_far: float | None = None,
              margin_frr: float = 0.0, published_threshold: float | None = None, method: str = "auto") -> Calibration:
    """Measure the gallery and choose the threshold (nothing stored).

    Args:
        conn: psycopg connection.
        model: face model name.
        target_fpir: open-set target: highest share of strangers accepted as anyone (default
            0.01); used unless ``target_far`` is given.
        target_far: per-comparison target: highest false accept rate of one identity-vs-face
            comparison (the pre-0005 calibration); when given, it chooses the threshold.
        margin_frr: share of correct genuine searches the margin condition may reject
            (0 = no margin condition).
        published_threshold: added to the table as the "published" row when given.
        method: ``auto`` | ``empirical`` | ``normal`` (module docstring).

    Returns:
        A :class:`Calibration` whose ``expected_fpir`` / ``expected_tpir`` are counted on the
        SQL stranger / genuine scores at the chosen threshold, whichever target chose it.

    Raises:
        pgvision.errors.UnknownModel: no such model.
        CalibrationError: fewer than 2 identities, or no identity with 2 faces.
        ValueError: neither target given, a target outside (0, 1), or an unknown method.
    """
    row = get_model(conn, model)
    if row["kind"] != "face":
        raise CalibrationError(f"model {model!r} is an image model; calibrate a face model (dlib, facenet)")
    emb, labels, face_ids = fetch_gallery(conn, row["model_id"])
    ids, counts = np.unique(labels, return_counts=True)
    if len(ids) < 2 or counts.max(initial=0) < 2:
        raise CalibrationError(
            f"model {model!r} has {len(labels)} enrolled faces of {len(ids)} identities; calibration needs at least "
            "2 identities and one with 2 or more faces: pgvision enroll NAME IMAGE... "
            "(or faces load --identity-from parent-dir)"
        )
    _check_targets(method, target_fpir, target_far)
    metric = row["metric"]
    ident, dist = identity_distances(emb, emb, labels, metric, probe_index=np.arange(len(emb)))
    own = labels[:, None] == ident[None, :]
    multi = np.isin(labels, ids[counts >= 2])
    genuine = dist[own & multi[:, None]]
    impostor = dist[~own]
    scores = score_open_set(conn, model, face_ids, labels)
    min_margin = 0.0
    if margin_frr > 0:
        ok = scores.genuine_correct & np.isfinite(scores.genuine_margin)
        if ok.any():
            min_margin = float(np.float32(np.quantile(scores.genuine_margin[ok], margin_frr)))
    if target_far is not None:
        threshold, method = _threshold_for_far(impostor, target_far, method)
        target_fpir = None
    else:
        threshold, method = _threshold_for_fpir(scores, impostor, len(ids), target_fpir, min_margin, method)
    far, frr, tar = rates(genuine, impostor, threshold)
    expected_fpir, expected_tpir = scores.rates(threshold, min_margin)
    table = _rates_table(genuine, impostor, published_threshold)
    return Calibration(
        model,
        metric,
        threshold,
        method,
        min_margin,
        target_far,
        far,
        frr,
        tar,
        len(genuine),
        len(impostor),
        len(ids),
        len(labels),
        genuine,
        impostor,
        table,
        target_fpir=target_fpir,
        open_set=scores,
        expected_fpir=expected_fpir,
        expected_tpir=expected_tpir,
    )


def _check_targets(method: str, target_fpir: float | None, target_far: float | None) -> None:
    """Raise :class:`InvalidValue` for an unknown method, no target, or a target outside (0, 1)."""
    if method not in METHODS:
        raise InvalidValue(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if target_far is None and target_fpir is None:
        raise InvalidValue("give a target: --target-fpir (open-set, per search) or --target-far (per comparison)")
    for name, value in (("FPIR", target_fpir), ("FAR", target_far)):
        if value is not None and not 0 < value < 1:
            raise InvalidValue(f"target {name} must be between 0 and 1 (exclusive), got {value}")


def _threshold_for_far(impostor: np.ndarray, target_far: float, method: str) -> tuple[float, str]:
    """(threshold, method used) for a per-comparison FAR target; ``auto`` resolved by tail size."""
    if method == "auto":
        method = "normal" if target_far * len(impostor) < MIN_TAIL else "empirical"
    return threshold_at_far(impostor, target_far, method), method


def _threshold_for_fpir(scores: OpenSetScores, impostor: np.ndarray, identities: int, target_fpir: float,
                        min_margin: float, method: str) -> tuple[float, str]:
    """(threshold, method used) for an open-set FPIR target; ``auto`` resolved by stranger count."""
    if method == "auto":
        method = "normal" if target_fpir * len(scores.stranger_distance) < MIN_TAIL else "empirical"
    if method == "normal":
        # (an empirical pooled quantile would need target_fpir / N x P x F x (P - 1) >= MIN_TAIL
        # comparisons, about the target_fpir x P x F >= MIN_TAIL that makes auto take "empirical")
        return threshold_at_fpir_pooled(impostor, target_fpir, identities), method
    return threshold_at_fpir(scores, target_fpir, min_margin, method), method


def _rates_table(genuine: np.ndarray, impostor: np.ndarray, published_threshold: float | None) -> list[tuple]:
    """Rows (label, threshold, FAR, FRR, TAR) at FAR 0.0001..0.05 by both methods, plus the published one."""
    table = []
    for f in (0.0001, 0.001, 0.01, 0.05):
        for m in ("empirical", "normal"):
            t = threshold_at_far(impostor, f, m)
            table.append((f"FAR {f:g} {m}", t, *rates(genuine, impostor, t)))
    if published_threshold is not None:
        table.append(("published", published_threshold, *rates(genuine, impostor, published_threshold)))
    return table


def store_calibration(conn: psycopg.Connection, cal: Calibration) -> int:
    """Set the model's threshold and min_margin and append the calibration to its history.

    A degenerate calibration is refused and the model keeps its threshold: one from a gallery
    where no face finds its own identity first (e.g. the same face enrolled under several
    names), at whatever threshold ``identify`` would then recognise nobody. (A threshold of
    0 from a gallery too small for the target is stored: it fails closed.)

    Returns:
        The new ``pgvision.calibrations.calibration_id``.

    Raises:
        CalibrationError: no genuine search finds its own identity first.
    """
    genuine = cal.open_set.genuine_correct
    if len(genuine) and not genuine.any():
        kept = get_model(conn, cal.model)["threshold"]
        raise CalibrationError(
            f"calibration of {cal.model!r} not stored: no gallery face finds its own identity first (0 of "
            f"{len(genuine)} genuine searches), so identify would recognise nobody at any threshold; the model keeps "
            f"its threshold {kept:.4f}. Check the gallery (the same face enrolled under several names?) and rerun; "
            "--dry-run prints the table")
    with conn.transaction():
        model_id = get_model(conn, cal.model)["model_id"]
        conn.execute("UPDATE pgvision.models SET threshold = %s, min_margin = %s WHERE model_id = %s",
                     (cal.threshold, cal.min_margin, model_id))
        return conn.execute(
            """
            INSERT INTO pgvision.calibrations (model_id, threshold, min_margin, target_far, far, frr, tar,
                                               genuine_pairs, impostor_pairs, target_fpir, expected_fpir,
                                               expected_tpir, strangers, method)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING calibration_id
            """,
            (model_id, cal.threshold, cal.min_margin, cal.target_far, cal.far, cal.frr, cal.tar,
             cal.genuine_pairs, cal.impostor_pairs, cal.target_fpir, cal.expected_fpir, cal.expected_tpir,
             cal.strangers, f"{'fpir' if cal.target_fpir is not None else 'far'} {cal.method}"),
        ).fetchone()[0]


def new_figure():
    """A (figure, axes) pair of 6 x 4.5 inches at 110 dpi, drawn off screen (matplotlib's Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4.5), dpi=110)


def save_figure(fig, ax, path: str, *, xlabel: str, ylabel: str, title: str) -> None:
    """Label ``ax`` (grid, legend lower right), write ``fig`` to ``path`` (PNG by its suffix), close it."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_roc(cal: Calibration, path: str) -> None:
    """Draw the ROC curve (TAR against FAR, log FAR axis) with the chosen point, as PNG."""
    thresholds = np.unique(np.concatenate([cal.genuine, cal.impostor]))
    far = np.searchsorted(np.sort(cal.impostor), thresholds, side="right") / max(len(cal.impostor), 1)
    tar = np.searchsorted(np.sort(cal.genuine), thresholds, side="right") / max(len(cal.genuine), 1)
    fig, ax = new_figure()
    floor = 1.0 / max(len(cal.impostor), 1)
    ax.plot(np.maximum(far, floor / 2), tar, lw=1.6, label=f"{cal.model} (gallery leave-one-out, rule v2)")
    ax.scatter([max(cal.far, floor / 2)], [cal.tar], color="C3", zorder=3,
               label=f"threshold {cal.threshold:.4f} ({cal.method}): FAR {cal.far:.4f}, TAR {cal.tar:.3f}")
    if cal.target_far is not None:
        ax.axvline(cal.target_far, color="0.6", ls="--", lw=1, label=f"target FAR {cal.target_far:g}")
    ax.set_xscale("log")
    save_figure(fig, ax, path, xlabel="FAR (impostor comparisons accepted)",
                ylabel="TAR (genuine comparisons accepted)",
                title=f"ROC on the enrolled gallery: {cal.identities} identities, {cal.faces} faces\n"
                f"{cal.genuine_pairs} genuine, {cal.impostor_pairs} impostor comparisons")
