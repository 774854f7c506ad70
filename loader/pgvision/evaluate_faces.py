"""Open-set identification evaluation on a labelled folder (``pgvision eval identify``).

Protocol (as NIST's face identification tests count it, FRVT/FRTE 1:N, NISTIR 8271):

1. Every photo of ``DIR/<identity>/*`` is loaded (detect, align, embed, store); the largest
   face of a photo is the face of that photo's person.
2. Identities are taken in sorted order; a share ``1 - unknown_fraction`` of them is enrolled
   (identity i is enrolled when ``ceil((i+1)(1-F)) > ceil(i(1-F))``: with F = 0.5 every second
   identity, the first one included) with its first N photos that have a face (sorted by
   file name). The model is calibrated on that gallery (:mod:`pgvision.faces.calibrate`).
3. Mated probes: the other photos of enrolled identities. Non-mated probes: every photo of
   the identities never enrolled. Each probe face goes through SQL ``pgvision.identify_face``.
4. Closed-set rank-1: share of mated probes whose best identity is right.
   TPIR (true positive identification rate): share of mated probes whose best identity is
   right AND accepted. FPIR (false positive identification rate): share of non-mated
   probes accepted as anyone. A probe photo without a face counts as a miss when mated and
   as a correct rejection when non-mated.
5. The TPIR-FPIR curve sweeps the threshold over the same SQL outputs (distance and margin
   of the best identity), for rule v2 and, for comparison, the nearest-face rule (v1),
   computed from the same stored embeddings.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgvision.errors import InvalidValue
from pgvision.faces.calibrate import (
    Calibration,
    calibrate,
    fetch_gallery,
    new_figure,
    save_figure,
    store_calibration,
)
from pgvision.faces.decide import (
    identity_distances,
    pairwise_distances,
    rank_identities,
)
from pgvision.faces.pipeline import FacePipeline
from pgvision.faces.store import enroll_stored
from pgvision.ingest.images import find_images, sha256_file
from pgvision.load_faces import FaceLoadSummary, load_faces
from pgvision.registry import get_model

SPLITS = ("first", "second")


def enrolled_identities(names: list[str], unknown_fraction: float, split: str = "first") -> set[str]:
    """The identities to enroll: ``ceil((i+1)(1-F)) > ceil(i(1-F))`` over the sorted names.

    ``split="second"`` shifts the rule by one name (``ceil((i+2)(1-F)) > ceil((i+1)(1-F))``):
    with F = 0.5 the first person is a stranger and the second enrolled, the other half of
    the "first" split.

    Raises:
        ValueError: unknown_fraction outside [0, 1), or split not first/second.
    """
    if not 0 <= unknown_fraction < 1:
        raise InvalidValue(f"unknown fraction must be in [0, 1), got {unknown_fraction}")
    if split not in SPLITS:
        raise InvalidValue(f"split must be first or second, got {split!r}")
    keep = 1.0 - unknown_fraction
    shift = SPLITS.index(split)
    return {n for i, n in enumerate(sorted(names), start=shift)
            if math.ceil(round((i + 1) * keep, 9)) > math.ceil(round(i * keep, 9))}


@dataclass
class Curve:
    """TPIR and FPIR over thresholds, for one rule."""

    rule: str
    thresholds: np.ndarray
    tpir: np.ndarray
    fpir: np.ndarray

    def tpir_at_fpir(self, fpir: float) -> tuple[float, float]:
        """(best TPIR with FPIR <= fpir, the threshold giving it)."""
        ok = self.fpir <= fpir + 1e-12
        if not ok.any():
            return 0.0, float("nan")
        i = int(np.argmax(np.where(ok, self.tpir, -1)))
        return float(self.tpir[i]), float(self.thresholds[i])


@dataclass
class EvalResult:
    """What ``pgvision eval identify`` measured.

    Attributes:
        model: face model; identities / enrolled: identity counts; gallery_faces: enrolled faces.
        mated, non_mated: probe counts (photos); no_face: probe photos without a face.
        rank1, tpir, fpir: at the calibrated threshold, through SQL.
        calibration: the gallery calibration used.
        curves: v2 (SQL rule) and v1 (nearest face) TPIR-FPIR curves.
        sql_agrees: probes whose SQL is_match equals the numpy rule's decision (sanity check).
        load: the load summary.
    """

    model: str
    identities: int
    enrolled: int
    gallery_faces: int
    mated: int
    non_mated: int
    no_face: int
    rank1: float
    tpir: float
    fpir: float
    calibration: Calibration
    curves: list[Curve] = field(default_factory=list)
    sql_agrees: int = 0
    load: FaceLoadSummary | None = None
    mated_no_face: int = 0

    def format(self) -> str:
        c = self.calibration
        target = c.target_label()
        lines = [
            f"model {self.model}: {self.identities} identities, "
            f"{self.enrolled} enrolled with {self.gallery_faces} faces; "
            f"probes: {self.mated} mated, {self.non_mated} non-mated ({self.no_face} without a face)",
            f"AT THE CALIBRATED THRESHOLD (what a deployment gets): TPIR {self.tpir:.3f}, FPIR {self.fpir:.3f} "
            f"(FNIR {1 - self.tpir:.3f}); closed-set rank-1 {self.rank1:.3f}",
            f"  calibrated on the gallery alone (pgvision calibrate, target {target}): threshold {c.threshold:.4f} "
            f"({c.metric}, {c.method}), min_margin {c.min_margin:.4f}; expected FPIR {c.expected_fpir:.4f} over "
            f"{c.strangers} stranger searches, expected TPIR {c.expected_tpir:.4f}",
        ]
        if c.support_note():
            lines.append(f"  note: {c.support_note()}")
        lines += [
            f"  over the {self.mated - self.mated_no_face} mated probes with a detected face: "
            f"rank-1 {self._with_face(self.rank1):.3f}, TPIR {self._with_face(self.tpir):.3f}",
            f"SQL is_match agrees with the numpy rule on {self.sql_agrees} "
            f"of {self.mated + self.non_mated - self.no_face} probes",
            "oracle curve (threshold chosen on the probes themselves, for comparison):",
            "TPIR at FPIR <=    " + "  ".join(f"{f:<12g}" for f in (0.005, 0.01, 0.02, 0.05, 0.1)),
        ]
        for curve in self.curves:
            cells = []
            with_face = []
            for f in (0.005, 0.01, 0.02, 0.05, 0.1):
                t, thr = curve.tpir_at_fpir(f)
                cells.append(f"{t:.3f} @{thr:.3f}")
                with_face.append(f"{self._with_face(t):.3f}")
            lines.append(f"  {curve.rule:<16}" + "  ".join(f"{c:<12}" for c in cells))
            lines.append("    (with a face) " + "  ".join(f"{c:<12}" for c in with_face))
        return "\n".join(lines)

    def _with_face(self, rate: float) -> float:
        """A mated rate over the probes with a detected face (those without one never count as hits)."""
        n = self.mated - self.mated_no_face
        return rate * self.mated / n if n else 0.0


def _curve(rule: str, correct: np.ndarray, d_mated: np.ndarray, m_mated: np.ndarray,
           d_non: np.ndarray, m_non: np.ndarray, min_margin: float, n_mated: int, n_non: int) -> Curve:
    ts = np.unique(np.concatenate([d_mated, d_non, [np.inf]]))
    ok_m = correct & (m_mated >= min_margin)
    ok_n = m_non >= min_margin
    sm = np.sort(d_mated[ok_m])
    sn = np.sort(d_non[ok_n])
    tpir = np.searchsorted(sm, ts, side="right") / max(n_mated, 1)
    fpir = np.searchsorted(sn, ts, side="right") / max(n_non, 1)
    return Curve(rule, ts, tpir, fpir)


def evaluate_identification(conn: psycopg.Connection, root: str | Path, pipeline: FacePipeline,
                            enroll_per_identity: int = 5, unknown_fraction: float = 0.5,
                            target_far: float | None = None, margin_frr: float = 0.0, method: str = "auto",
                            progress: bool = True, target_fpir: float = 0.01, split: str = "first") -> EvalResult:
    """Run the protocol of the module docstring in the database behind ``conn``.

    The database should be a scratch one (:func:`scratch_database`): identities are enrolled
    and the model's threshold is calibrated there, from the gallery alone, as ``pgvision
    calibrate`` would (``target_fpir`` by default; ``target_far`` instead when given); the
    probes are then measured at that threshold.

    Raises:
        ValueError: fewer than 2 identity folders, or enroll_per_identity < 1.
        pgvision.faces.calibrate.CalibrationError: the gallery is too small to calibrate.
    """
    if enroll_per_identity < 1:
        raise InvalidValue(f"enroll-per-identity must be at least 1, got {enroll_per_identity}")
    root = Path(root)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    photos = {f.name: find_images([f]) for f in folders}
    photos = {k: v for k, v in photos.items() if v}
    if len(photos) < 2:
        raise InvalidValue(
            f"{root} has {len(photos)} identity folders with photos; eval needs at least 2 (DIR/<identity>/*.jpg)"
        )
    summary = load_faces(conn, [p for ps in photos.values() for p in ps], pipeline, progress=progress)
    model = pipeline.model.name
    detector = pipeline.detector.detector
    model_id = get_model(conn, model)["model_id"]
    largest = {
        bytes(r[0]): r[1]
        for r in conn.execute(
            """
            SELECT DISTINCT ON (f.image_id) i.sha256, f.face_id
            FROM pgvision.faces f JOIN pgvision.images i ON i.image_id = f.image_id
            WHERE f.detector = %s ORDER BY f.image_id, (f.box_right - f.box_left) DESC, f.face_id
            """,
            (detector,),
        )
    }
    enrolled = enrolled_identities(list(photos), unknown_fraction, split)
    mated, non_mated, no_face = [], [], 0  # (face_id or None, true name)
    gallery_faces = 0
    for name, paths in photos.items():
        digests = [sha256_file(p) for p in paths]
        with_face = [d for d in digests if d in largest]
        no_face_here = len(digests) - len(with_face)
        if name in enrolled:
            gallery = with_face[:enroll_per_identity]
            gallery_faces += enroll_stored(conn, detector, gallery, name)
            rest = [d for d in digests if d not in set(gallery)]
            mated += [(largest.get(d), name) for d in rest]
        else:
            non_mated += [(largest.get(d), name) for d in digests]
        no_face += no_face_here
    cal = calibrate(conn, model, target_fpir=target_fpir, target_far=target_far, margin_frr=margin_frr,
                    published_threshold=pipeline.model.threshold, method=method)
    store_calibration(conn, cal)

    def probe(face_id):
        if face_id is None:
            return None
        row = conn.execute(
            "SELECT name, distance, margin, is_match FROM pgvision.identify_face(%s, model => %s, candidates => 2)",
            (face_id, model),
        ).fetchone()
        return row

    mated_rows = [probe(f) for f, _ in mated]
    non_rows = [probe(f) for f, _ in non_mated]
    correct = np.array([r is not None and r[0] == name for r, (_, name) in zip(mated_rows, mated, strict=True)])
    sql_match_m = np.array([r is not None and r[3] for r in mated_rows])
    sql_match_n = np.array([r is not None and r[3] for r in non_rows])

    # The same decisions in numpy, from the stored embeddings: v2 (SQL's rule) and v1.
    g_emb, g_lab, g_ids = fetch_gallery(conn, model_id)
    ids_names = dict(conn.execute("SELECT identity_id, name FROM pgvision.identities").fetchall())
    probe_ids = [f for f, _ in mated + non_mated if f is not None]
    emb = {r[0]: np.asarray(r[1].to_numpy(), np.float32) for r in conn.execute(
        "SELECT face_id, embedding FROM pgvision.face_embeddings WHERE model_id = %s AND face_id = ANY(%s)",
        (model_id, probe_ids))}
    metric = cal.metric
    curves = []
    for rule in ("v2 (SQL rule)", "v1 nearest face"):
        d_list, m_list, best_list = [], [], []
        for group in (mated, non_mated):
            X = (
                np.stack([emb[f] for f, _ in group if f is not None])
                if any(f is not None for f, _ in group)
                else np.zeros((0, g_emb.shape[1]))
            )
            if rule.startswith("v2"):
                ids, D = identity_distances(X, g_emb, g_lab, metric)
            else:
                face_d = pairwise_distances(X, g_emb, metric)
                ids = np.unique(g_lab)
                D = np.stack([face_d[:, g_lab == i].min(1) for i in ids], axis=1) if len(X) else np.zeros((0, len(ids)))
            r = rank_identities(ids, D)
            d_list.append(r.distance)
            m_list.append(r.margin)
            best_list.append(np.array([ids_names[i] for i in r.best]))
        have_m = np.array([f is not None for f, _ in mated])
        true_m = np.array([n for f, n in mated if f is not None])
        corr = best_list[0] == true_m
        if rule.startswith("v2"):
            sql_agrees = int(
                ((d_list[0] <= cal.threshold) & (m_list[0] >= cal.min_margin) == sql_match_m[have_m]).sum()
            )
            have_n = np.array([f is not None for f, _ in non_mated])
            sql_agrees += int(
                ((d_list[1] <= cal.threshold) & (m_list[1] >= cal.min_margin) == sql_match_n[have_n]).sum()
            )
        curves.append(_curve(rule, corr, d_list[0], m_list[0], d_list[1], m_list[1],
                             cal.min_margin if rule.startswith("v2") else 0.0, len(mated), len(non_mated)))
    return EvalResult(
        model=model, identities=len(photos), enrolled=len(enrolled & set(photos)), gallery_faces=len(g_lab),
        mated=len(mated), non_mated=len(non_mated), no_face=no_face,
        rank1=float(correct.mean()) if len(correct) else 0.0,
        tpir=float((correct & sql_match_m).mean()) if len(correct) else 0.0,
        fpir=float(sql_match_n.mean()) if len(sql_match_n) else 0.0,
        calibration=cal, curves=curves, sql_agrees=sql_agrees, load=summary,
        mated_no_face=sum(f is None for f, _ in mated),
    )


def plot_tpir_fpir(result: EvalResult, path: str) -> None:
    """Draw TPIR against FPIR (log FPIR axis) for each rule, with the calibrated point, as PNG."""
    floor = 0.5 / max(result.non_mated, 1)
    fig, ax = new_figure()
    for curve, style in zip(result.curves, ("-", "--"), strict=False):
        ax.step(np.maximum(curve.fpir, floor), curve.tpir, where="post", ls=style, lw=1.6, label=curve.rule)
    ax.scatter(
        [max(result.fpir, floor)],
        [result.tpir],
        color="C3",
        zorder=3,
        label=f"calibrated ({result.calibration.target_label()}): TPIR {result.tpir:.3f}, FPIR {result.fpir:.3f}",
    )
    ax.axvline(0.02, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlim(floor * 0.8, 1.0)
    ax.set_ylim(max(0.0, min(c.tpir_at_fpir(0.005)[0] for c in result.curves) - 0.1), 1.005)
    save_figure(fig, ax, path, xlabel="FPIR (non-mated probes accepted as someone)",
                ylabel="TPIR (mated probes: right identity, accepted)",
                title=f"{result.model}: {result.enrolled} enrolled identities ({result.gallery_faces} faces), "
                f"{result.mated} mated / {result.non_mated} non-mated probes")


@contextmanager
def scratch_database(url: str, keep: bool = False) -> Iterator[str]:
    """A fresh database on the server of ``url``, migrated to head; dropped afterwards.

    Raises:
        psycopg.errors.InsufficientPrivilege: the user may not CREATE DATABASE.
    """
    from pgvision import migrate

    name = f"pgvision_eval_{np.random.default_rng().integers(1 << 40):x}"
    admin = make_conninfo(url, dbname=conninfo_to_dict(url).get("dbname") or "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    scratch = make_conninfo(url, dbname=name)
    try:
        migrate.upgrade(scratch)
        yield scratch
    finally:
        if not keep:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
