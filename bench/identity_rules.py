"""Which identity rule? Seven rules compared on one half of the people, reported on the other.

An identity rule turns a probe face's distances to the gallery into one score per enrolled
identity (and so a best identity and an open-set decision). Seven rules are compared, with
dlib descriptors (128-d, L2) of a folder ``DIR/<identity>/*.jpg`` (the photo's largest
face, as ``pgvision faces load`` takes it; :func:`common.face_descriptors`):

1. nearest face: the distance to the identity's nearest gallery face;
2. mean of the 3 nearest faces of the identity;
3. mean of all the identity's gallery distances;
4. distance to the identity's gallery mean (its template);
5. min(nearest face, gallery mean): pgvision's rule (``sql/functions/_identify.v5.sql``,
   :func:`pgvision.faces.decide.identity_distances`);
6. nearest face - 0.5 x margin (margin = second identity's nearest face - best);
7. best / second distance ratio (nearest faces).

**Selection** uses the people of the first half of the folder (sorted by name): every
other one enrolled with its first ``--enroll-per-identity`` photos with a face, the rest
of their photos mated probes, the other people's photos non-mated probes; two splits (the
1st, 3rd, ... person enrolled, then the 2nd, 4th, ...). The score is TPIR at FPIR <= 0.005
/ 0.01 / 0.02 (the oracle threshold on those probes); the rule with the highest mean TPIR
at FPIR <= 0.02 over both splits is selected (ties: mean over the three FPIRs, then the
simpler rule, i.e. the lower number).

**Report**: the people of the second half, never seen by the selection, same protocol:
the threshold ``pgvision calibrate`` would choose from the gallery alone (``--target-fpir``,
default 0.01, Gaussian of every impostor comparison: :func:`threshold_at_fpir_pooled`, rule
5 leave-one-out) and the TPIR / FPIR the probes then see, with pgvision's rule; and every
rule's oracle TPIR at FPIR <= 0.02 there, for comparison; and the FPIR at dlib's published
0.6, the default before calibration. Photos without a face count as
misses among mated probes and never as false accepts.

No database: numpy only. Example::

    PYTHONPATH=loader .venv/bin/python bench/identity_rules.py ../shared/data/lfw_faces
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import common
from pgvision.faces.calibrate import threshold_at_fpir_pooled
from pgvision.faces.decide import identity_distances

RULES = {
    1: "nearest face",
    2: "mean of the 3 nearest faces",
    3: "mean of all gallery distances",
    4: "distance to the gallery mean",
    5: "min(nearest face, gallery mean) (pgvision)",
    6: "nearest face - 0.5 x margin",
    7: "best / second distance ratio",
}
PGVISION_RULE = 5
#: dlib's published verification threshold (L2), the model's default before calibration.
PUBLISHED = 0.6
FPIRS = (0.005, 0.01, 0.02)


def protocol(names: np.ndarray, has: np.ndarray, people: list[str], split: str, per_identity: int):
    """(gallery, mated, non_mated) photo indices: every other person enrolled, as ``eval identify``."""
    first = 0 if split == "first" else 1
    enrolled = set(people[first::2])
    gallery, mated, non_mated = [], [], []
    for n in people:
        idx = list(np.flatnonzero(names == n))
        if n in enrolled:
            g = [i for i in idx if has[i]][:per_identity]
            gallery += g
            mated += [i for i in idx if i not in g]
        else:
            non_mated += idx
    return np.array(gallery), np.array(mated), np.array(non_mated)


def scores(rule: int, probes: np.ndarray, gallery: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(best identity label (P,), score (P,), lower = more alike) of each probe under ``rule``."""
    ids = np.unique(labels)
    d = np.linalg.norm(probes[:, None, :] - gallery[None, :, :], axis=2)  # (P, G)
    per_id = [d[:, labels == i] for i in ids]
    nearest = np.stack([x.min(axis=1) for x in per_id], axis=1)
    if rule in (1, 6, 7):
        order = np.argsort(nearest, axis=1)
        best = np.take_along_axis(nearest, order[:, :1], axis=1)[:, 0]
        second = np.take_along_axis(nearest, order[:, 1:2], axis=1)[:, 0]
        score = {1: best, 6: best - 0.5 * (second - best), 7: best / np.maximum(second, 1e-12)}[rule]
        return ids[order[:, 0]], score
    if rule == 2:
        s = np.stack([np.sort(x, axis=1)[:, :3].mean(axis=1) for x in per_id], axis=1)
    elif rule == 3:
        s = np.stack([x.mean(axis=1) for x in per_id], axis=1)
    else:
        templates = np.stack([gallery[labels == i].mean(axis=0) for i in ids])
        to_template = np.linalg.norm(probes[:, None, :] - templates[None, :, :], axis=2)
        s = to_template if rule == 4 else np.minimum(nearest, to_template)
    j = np.argmin(s, axis=1)
    return ids[j], s[np.arange(len(s)), j]


def tpir_at(mated_ok: np.ndarray, mated_s: np.ndarray, n_mated: int, non_s: np.ndarray, n_non: int,
            fpir: float) -> float:
    """Oracle TPIR at FPIR <= ``fpir``: the largest threshold whose false accepts stay within it."""
    allowed = int(np.floor(fpir * n_non + 1e-9))
    s = np.sort(non_s)
    t = s[allowed] if allowed < len(s) else np.inf  # accept strictly below the (allowed+1)-th stranger
    return float(np.sum(mated_ok & (mated_s < t)) / n_mated)


def evaluate(rule: int, emb, has, label, gallery, mated, non_mated) -> dict:
    G, L = emb[gallery], label[gallery]
    m = np.array([i for i in mated if has[i]], dtype=int)
    n = np.array([i for i in non_mated if has[i]], dtype=int)
    m_best, m_s = scores(rule, emb[m], G, L)
    _, n_s = scores(rule, emb[n], G, L)
    ok = m_best == label[m]
    return {f: tpir_at(ok, m_s, len(mated), n_s, len(non_mated), f) for f in FPIRS}


def calibrated(emb, has, label, gallery, mated, non_mated, target: float) -> dict:
    """pgvision's operating point: threshold from the gallery alone, then TPIR / FPIR on the probes."""
    G, L = emb[gallery], label[gallery]
    ids, D = identity_distances(G, G, L, "l2", probe_index=np.arange(len(G)))
    impostor = D[L[:, None] != ids[None, :]]
    t = threshold_at_fpir_pooled(impostor, target, len(ids))
    m = np.array([i for i in mated if has[i]], dtype=int)
    n = np.array([i for i in non_mated if has[i]], dtype=int)
    m_best, m_s = scores(PGVISION_RULE, emb[m], G, L)
    _, n_s = scores(PGVISION_RULE, emb[n], G, L)
    # the rule as the package computes it (identity_distances) gives the same best distances
    _, d_pkg = identity_distances(emb[m], G, L, "l2")
    assert np.allclose(d_pkg.min(axis=1), m_s, atol=1e-4), "rule 5 differs from pgvision.faces.decide"
    tpir = float(np.sum((m_best == label[m]) & (m_s <= t)) / len(mated))
    fpir = float(np.sum(n_s <= t) / len(non_mated))
    return {"threshold": float(t), "tpir": tpir, "fpir": fpir, "false_accepts": int(np.sum(n_s <= t)),
            "fpir_at_published": float(np.sum(n_s <= PUBLISHED) / len(non_mated)),
            "mated": len(mated), "non_mated": len(non_mated), "identities": len(ids)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="DIR/<identity>/*.jpg, e.g. ../shared/data/lfw_faces")
    ap.add_argument("--enroll-per-identity", type=int, default=5)
    ap.add_argument("--target-fpir", type=float, default=0.01, help="calibrate's target on the report half")
    a = ap.parse_args()
    names, emb, has = common.face_descriptors(a.folder)
    people = sorted(set(names.tolist()))
    label = np.array([people.index(n) for n in names])
    half = len(people) // 2
    select, report = people[:half], people[half:]
    results = {"benchmark": "identity_rules", "args": {k: str(v) for k, v in vars(a).items()},
               "selection_people": select, "report_people": report}

    sel = {}
    for split in ("first", "second"):
        g, m, n = protocol(names, has, select, split, a.enroll_per_identity)
        for r in RULES:
            sel[(r, split)] = evaluate(r, emb, has, label, g, m, n)
        print(f"selection, split {split}: {len(g)} gallery faces, {len(m)} mated, {len(n)} non-mated probes")
    rows = [[f"{r}. {RULES[r]}"] + [sel[(r, s)][f] for s in ("first", "second") for f in FPIRS] for r in RULES]
    common.print_table(["rule"] + [f"{s} {f}" for s in ("first", "second") for f in FPIRS], rows,
                       f"selection half ({len(select)} people: {select[0]} .. {select[-1]}): TPIR at FPIR <=")

    def key(r):
        at02 = np.mean([sel[(r, s)][0.02] for s in ("first", "second")])
        allf = np.mean([sel[(r, s)][f] for s in ("first", "second") for f in FPIRS])
        return (round(at02, 6), round(allf, 6), -r)

    chosen = max(RULES, key=key)
    print(f"\nselected: rule {chosen} ({RULES[chosen]}); pgvision's rule is {PGVISION_RULE}")
    results["selection"] = {f"{r}/{s}": v for (r, s), v in sel.items()}
    results["chosen"] = chosen

    rows, held = [], {}
    for split in ("first", "second"):
        g, m, n = protocol(names, has, report, split, a.enroll_per_identity)
        c = calibrated(emb, has, label, g, m, n, a.target_fpir)
        held[split] = {"calibrated": c, "oracle": {r: evaluate(r, emb, has, label, g, m, n)[0.02] for r in RULES}}
        rows.append([split, c["identities"], c["mated"], c["non_mated"], f"{c['threshold']:.4f}", c["tpir"],
                     f"{c['fpir']:.4f} ({c['false_accepts']})", c["fpir_at_published"]])
    common.print_table(["split", "enrolled", "mated", "non-mated", "calibrated threshold (L2)", "TPIR",
                        "FPIR (false accepts)", f"FPIR at dlib's {PUBLISHED}"],
                       rows, f"report half ({len(report)} people: {report[0]} .. {report[-1]}), pgvision's rule, "
                             f"calibrate --target-fpir {a.target_fpir} on the gallery alone")
    common.print_table(["rule", "first", "second"],
                       [[f"{r}. {RULES[r]}", held["first"]["oracle"][r], held["second"]["oracle"][r]] for r in RULES],
                       "report half, oracle TPIR at FPIR <= 0.02 (for comparison; not used to select)")
    results["report"] = held
    common.write_results("identity_rules", results)


if __name__ == "__main__":
    main()
