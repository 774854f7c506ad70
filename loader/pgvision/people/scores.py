"""Clustering scores: pairwise and BCubed precision / recall / F1 against true labels.

BCubed (Bagga and Baldwin 1998; Amigo et al., "A comparison of extrinsic clustering
evaluation metrics", Information Retrieval 12, 2009): for each item, precision = the share
of the items in its cluster that have its label, recall = the share of the items with its
label that are in its cluster; averaged over items. An item left unassigned is a cluster of
its own (precision 1, recall 1 / size of its label), so leaving faces out costs recall and
never buys precision. Pairwise: precision and recall over the pairs of items put together.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pgvision.errors import InvalidValue


@dataclass
class ClusterScores:
    """Scores of one clustering.

    Attributes:
        bcubed_precision, bcubed_recall, bcubed_f1: BCubed, in [0, 1].
        pairwise_precision, pairwise_recall, pairwise_f1: over pairs, in [0, 1].
        items: labelled items scored; unassigned: those without a cluster.
        clusters: clusters holding at least one scored item; labels: distinct true labels.
    """

    bcubed_precision: float
    bcubed_recall: float
    bcubed_f1: float
    pairwise_precision: float
    pairwise_recall: float
    pairwise_f1: float
    items: int
    unassigned: int
    clusters: int
    labels: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _pairs(k: int) -> int:
    return k * (k - 1) // 2


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score_clustering(labels: list[str], clusters: list[int | None]) -> ClusterScores:
    """Score ``clusters`` (None = unassigned) against ``labels``, item by item.

    Raises:
        pgvision.errors.InvalidValue (a ValueError): the two lists differ in length, or are empty.
    """
    if len(labels) != len(clusters) or not labels:
        raise InvalidValue(
            f"labels and clusters must be non-empty and of one length, got {len(labels)} and {len(clusters)}"
        )
    keyed = [c if c is not None else ("single", i) for i, c in enumerate(clusters)]
    size_c = Counter(keyed)
    size_l = Counter(labels)
    both = Counter(zip(keyed, labels, strict=True))
    n = len(labels)
    precision = sum(both[(c, lab)] / size_c[c] for c, lab in zip(keyed, labels, strict=True)) / n
    recall = sum(both[(c, lab)] / size_l[lab] for c, lab in zip(keyed, labels, strict=True)) / n
    together_right = sum(_pairs(k) for k in both.values())
    together = sum(_pairs(k) for k in size_c.values())
    same_label = sum(_pairs(k) for k in size_l.values())
    pp = together_right / together if together else 1.0
    pr = together_right / same_label if same_label else 1.0
    return ClusterScores(
        precision,
        recall,
        _f1(precision, recall),
        pp,
        pr,
        _f1(pp, pr),
        n,
        sum(c is None for c in clusters),
        len({c for c in clusters if c is not None}),
        len(size_l),
    )
