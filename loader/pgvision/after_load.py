"""What a load did (:class:`LoadSummary`), shared by image loading and vector loading.

Needs neither torch nor Pillow: :mod:`pgvision.load_vectors` (the core install's
``load-vectors``) and :mod:`pgvision.load_images` (images) both report with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import psycopg

from pgvision.index import recall_target
from pgvision.ingest.files import SKIP_REASONS


@dataclass
class LoadSummary:
    """What a load did.

    Attributes:
        model: registered model name; model_id: its ``pgvision.models.model_id``.
        found: image files found (after ``limit``).
        loaded: embeddings written by this run.
        already_present: files whose image was already embedded with this model (before
            this run, or by a concurrent loader meanwhile).
        duplicates: files with the same bytes as another file of this run.
        skipped: ``{reason: count}`` of files that could not be used (see
            :data:`pgvision.ingest.files.SKIP_REASONS`).
        skipped_files: ``[(path, reason, detail)]``, in the order met.
        seconds: stage timings in seconds (see the module docstring).
        index: name of the model's ANN index (None when not built).
        index_mb: its size in MB (``pg_relation_size``), None without an index.
        recall: the search setting chosen for the model's target recall after this load
            (:func:`pgvision.index.recall_target.recheck`), one line; None when not re-chosen.
        unit: what ``found`` counts, ``"files"`` (images) or ``"vectors"`` (``load-vectors``,
            whose rate is then given in vec/s instead of img/s).
        device_failure: one line when device (GPU) decoding stopped after a device failure
            (:class:`pgvision.ingest.decode_gpu.DeviceFailure`): what failed and how many
            JPEGs were decoded on the CPU instead; None otherwise.
    """

    model: str
    model_id: int
    found: int = 0
    loaded: int = 0
    already_present: int = 0
    duplicates: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    index: str | None = None
    index_mb: float | None = None
    recall: str | None = None
    unit: str = "files"
    device_failure: str | None = None

    def format(self) -> str:
        """One-paragraph summary, e.g. ``loaded 98, already present 2, skipped 3: 2 truncated, ...``."""
        parts = [f"loaded {self.loaded}", f"already present {self.already_present}"]
        if self.duplicates:
            parts.append(f"duplicate files {self.duplicates}")
        skipped = sum(self.skipped.values())
        text = ", ".join(parts) + f", skipped {skipped}"
        if skipped:
            order = {r: i for i, r in enumerate(SKIP_REASONS)}
            reasons = sorted(self.skipped.items(), key=lambda kv: order.get(kv[0], len(order)))
            text += ": " + ", ".join(f"{n} {r}" for r, n in reasons)
        s = self.seconds
        text += (
            f"\nmodel {self.model} (model_id {self.model_id}); {self.found} {self.unit}; seconds: "
            + ", ".join(f"{k} {s[k]:.1f}" for k in ("startup", "hash", "decode", "device_decode", "wait", "embed", "copy", "index", "total")
                       if k in s)
        )
        if self.loaded and s.get("total"):
            text += f"; {self.loaded / s['total']:.1f} {'vec' if self.unit == 'vectors' else 'img'}/s"
        if self.index_mb is not None:
            text += f"; index {self.index_mb:.1f} MB"
        if self.recall:
            text += "\n" + self.recall
        if self.device_failure:
            text += "\n" + self.device_failure
        return text


def recheck_recall(conn: psycopg.Connection, model_id: int) -> str | None:
    """Re-choose the model's ef_search / probes when it grew past the rule of recall_target."""
    choice = recall_target.recheck(conn, model_id)
    return recall_target.describe(choice) if choice else None
