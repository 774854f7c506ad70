"""Does ``calibrate``'s open-set estimate predict the FPIR the probes then see?

The ``normal`` open-set method (pgvision.faces.calibrate) predicts, for a threshold t,
``FPIR(t) = 1 - (1 - Phi((t - mu) / sigma))^N``: a Gaussian fitted to every impostor
comparison of the gallery (each gallery face against each other identity, rule v2,
leave-one-out) and N independent comparisons per stranger (NISTIR 8271 sec. 3). This script
puts that prediction beside the FPIR and TPIR observed on the probes of ``pgvision eval
identify``'s protocol, threshold by threshold, for both splits, so a bias of the estimator
(e.g. from correlated comparisons or a non-Gaussian tail) would show as a systematic gap.

It runs the protocol in numpy, without a database: every photo of the folder embedded
(dlib, HOG, largest face), the same enrolled / gallery / probe sets as
``evaluate_identification`` (``enrolled_identities``, first ``--enroll-per-identity`` photos
with a face), the same rule (``identity_distances``, rule v2, which SQL ``identify_face``
agreed with on every probe in the eval runs, docs/faces.md) and the same threshold
function (``threshold_at_fpir_pooled``).

``--augment`` re-embeds with test-time augmentation instead of dlib's single pass, to see
whether a steadier embedding moves the calibrated operating point: ``flip`` averages the
descriptors of the chip and its mirror image (the usual face-verification test-time
augmentation, e.g. ArcFace's LFW evaluation), ``jitter`` is dlib's own
``compute_face_descriptor(..., num_jitters=10)`` (random crops, flips and scalings of the
chip, averaged; dlib's dnn_face_recognition_ex: "a little more accurate", 10x slower).

Example::

    PYTHONPATH=loader .venv/bin/python bench/calibration_check.py ../shared/data/lfw_faces
    PYTHONPATH=loader .venv/bin/python bench/calibration_check.py ../shared/data/lfw_faces --augment flip
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.stats import norm

import common
from pgvision.evaluate_faces import enrolled_identities
from pgvision.faces.calibrate import fpir_from_fmr, per_comparison_target, threshold_at_fpir_pooled
from pgvision.faces.decide import identity_distances, rank_identities


def check(names, emb, has, split: str, per_identity: int, target: float, grid) -> dict:
    people = sorted(set(names))
    number = {n: i for i, n in enumerate(people)}
    label = np.array([number[n] for n in names])
    enrolled = enrolled_identities(people, 0.5, split)
    gallery, mated, non_mated = [], [], []
    for n in people:
        idx = np.flatnonzero(names == n)
        if n in enrolled:
            g = [i for i in idx if has[i]][:per_identity]
            gallery += g
            mated += [i for i in idx if i not in g]
        else:
            non_mated += list(idx)
    gallery = np.array(gallery)
    G, L = emb[gallery], label[gallery]
    ids, D = identity_distances(G, G, L, "l2", probe_index=np.arange(len(G)))
    impostor = D[L[:, None] != ids[None, :]]
    n_ids = len(ids)
    threshold = threshold_at_fpir_pooled(impostor, target, n_ids)

    def best(idx):
        idx = np.array([i for i in idx if has[i]], dtype=int)
        _, d = identity_distances(emb[idx], G, L, "l2")
        r = rank_identities(ids, d)
        return idx, r.best, r.distance

    m_idx, m_best, m_d = best(mated)
    _, _, n_d = best(non_mated)

    def observed(t):  # photos without a face count as misses (TPIR) and never as false accepts
        return (float(np.sum((m_best == label[m_idx]) & (m_d <= t)) / len(mated)),
                float(np.sum(n_d <= t) / len(non_mated)))

    mu, sigma = impostor.mean(), impostor.std(ddof=1)
    rows = []
    for t in [*grid, threshold]:
        tpir, fpir = observed(t)
        predicted = fpir_from_fmr(norm.cdf(t, mu, sigma), n_ids)
        rows.append([split, f"{t:.4f}" + (" (calibrated)" if t == threshold else ""), predicted, fpir,
                     int(round(fpir * len(non_mated))), tpir])
    return {"split": split, "identities": n_ids, "impostor_comparisons": int(impostor.size), "mu": mu, "sigma": sigma,
            "fmr": per_comparison_target(target, n_ids), "threshold": threshold, "calibrated": observed(threshold),
            "mated": len(mated), "non_mated": len(non_mated), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="DIR/<identity>/*.jpg, e.g. ../shared/data/lfw_faces")
    ap.add_argument("--enroll-per-identity", type=int, default=5)
    ap.add_argument("--target-fpir", type=float, default=0.01)
    ap.add_argument("--augment", choices=("none", "flip", "jitter"), default="none",
                    help="test-time augmentation of the dlib descriptors (see above)")
    a = ap.parse_args()
    names, emb, has = common.face_descriptors(a.folder, a.augment)
    grid = np.round(np.arange(0.40, 0.561, 0.02), 2)
    results = {"benchmark": "calibration_check", "args": {k: str(v) for k, v in vars(a).items()}, "splits": []}
    rows = []
    for split in ("first", "second"):
        r = check(names, emb, has, split, a.enroll_per_identity, a.target_fpir, grid)
        results["splits"].append(r)
        rows += r["rows"]
        print(f"split {split}: {r['identities']} identities, {r['impostor_comparisons']} impostor comparisons "
              f"(mean {r['mu']:.4f}, sd {r['sigma']:.4f}), FMR {r['fmr']:.2e} -> threshold {r['threshold']:.4f}: "
              f"TPIR {r['calibrated'][0]:.3f}, FPIR {r['calibrated'][1]:.4f} "
              f"({r['mated']} mated, {r['non_mated']} non-mated)")
    common.print_table(["split", "threshold (L2)", "predicted FPIR", "observed FPIR", "false accepts", "observed TPIR"],
                       rows, f"predicted (Gaussian x independence) vs observed FPIR, target {a.target_fpir}")
    common.write_results("calibration_check", results)


if __name__ == "__main__":
    main()
