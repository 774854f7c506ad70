"""What every loader shares: the skipped-file record, the end of a load, the summary's tail.

The three loaders (:mod:`pgvision.load_images`, :mod:`pgvision.load_vectors`,
:mod:`pgvision.load_faces`) report with a :class:`LoadReport` subclass and end with
:func:`finish_load`: ``ANALYZE`` of the tables written, the model's ANN index built when
missing, the search setting re-chosen for the model's target recall, the index size; a
connection lost at any point becomes one :class:`pgvision.errors.DatabaseUnreachable` line
(:func:`connection_lost_guard`).

Needs neither torch nor Pillow: ``load-vectors`` runs on the core install.
"""

from __future__ import annotations

import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import psycopg

from pgvision.index import build_progress, collection_index, ddl, recall_target
from pgvision.ingest.files import SKIP_REASONS
from pgvision.server.connection import lost_connection


@dataclass(kw_only=True)
class LoadReport:
    """What every load reports besides its own counts.

    Attributes:
        skipped: ``{reason: count}`` of files that could not be used (see
            :data:`pgvision.ingest.files.SKIP_REASONS`; the face loader adds ``no-face`` and
            ``identity-name``).
        skipped_files: ``[(path, reason, detail)]``, in the order met (``detail`` may be "").
        seconds: stage timings in seconds (each loader's docstring names its stages).
        index: name of the model's ANN index (None when not built).
        index_mb: its size in MB (``pg_relation_size``), None without an index.
        recall: the search setting chosen for the model's target recall after this load
            (:func:`pgvision.index.recall_target.recheck`), one line; None when not re-chosen.
    """

    skipped: Counter = field(default_factory=Counter)
    skipped_files: list[tuple[str, str, str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    index: str | None = None
    index_mb: float | None = None
    recall: str | None = None

    def skip(self, path: str, reason: str, detail: str = "") -> None:
        """Record one file that could not be used."""
        self.skipped[reason] += 1
        self.skipped_files.append((str(path), reason, detail))

    def skipped_text(self) -> str:
        """``skipped 3: 2 truncated, 1 no-face`` (reasons in :data:`SKIP_REASONS` order, then by name)."""
        total = sum(self.skipped.values())
        text = f"skipped {total}"
        if total:
            order = {r: i for i, r in enumerate(SKIP_REASONS)}
            reasons = sorted(self.skipped.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0]))
            text += ": " + ", ".join(f"{n} {r}" for r, n in reasons)
        return text

    def seconds_text(self, stages: tuple[str, ...]) -> str:
        """``seconds: hash 0.1, copy 0.2, total 0.4`` over the ``stages`` timed."""
        return "seconds: " + ", ".join(f"{k} {self.seconds[k]:.1f}" for k in stages if k in self.seconds)

    def index_text(self) -> str:
        """The summary's tail: ``; index 1.2 MB`` then the recall line, each when known."""
        text = f"; index {self.index_mb:.1f} MB" if self.index_mb is not None else ""
        return text + ("\n" + self.recall if self.recall else "")


@dataclass
class LoadSummary(LoadReport):
    """What an image or vector load did.

    Attributes:
        model: registered model name; model_id: its ``pgvision.models.model_id``.
        found: image files found (after ``limit``).
        loaded: embeddings written by this run.
        already_present: files whose image was already embedded with this model (before
            this run, or by a concurrent loader meanwhile).
        duplicates: files with the same bytes as another file of this run.
        unit: what ``found`` counts, ``"files"`` (images) or ``"vectors"`` (``load-vectors``,
            whose rate is then given in vec/s instead of img/s).
        device_failure: one line when device (GPU) decoding stopped after a device failure
            (:class:`pgvision.ingest.decode_gpu.DeviceFailure`): what failed and how many
            JPEGs were decoded on the CPU instead; None otherwise.

    The rest (skips, seconds, index, recall) is :class:`LoadReport`'s.
    """

    model: str
    model_id: int
    found: int = 0
    loaded: int = 0
    already_present: int = 0
    duplicates: int = 0
    unit: str = "files"
    device_failure: str | None = None

    #: Timed stages, in the order the summary prints them (see :mod:`pgvision.load_images`).
    STAGES = ("startup", "hash", "decode", "device_decode", "wait", "embed", "copy", "index", "total")

    def format(self) -> str:
        """One-paragraph summary, e.g. ``loaded 98, already present 2, skipped 3: 2 truncated, ...``."""
        parts = [f"loaded {self.loaded}", f"already present {self.already_present}"]
        if self.duplicates:
            parts.append(f"duplicate files {self.duplicates}")
        text = ", ".join(parts) + ", " + self.skipped_text()
        text += f"\nmodel {self.model} (model_id {self.model_id}); {self.found} {self.unit}; "
        text += self.seconds_text(self.STAGES)
        total = self.seconds.get("total")
        if self.loaded and total:
            text += f"; {self.loaded / total:.1f} {'vec' if self.unit == 'vectors' else 'img'}/s"
        text += self.index_text()
        return text + ("\n" + self.device_failure if self.device_failure else "")


@contextmanager
def connection_lost_guard(loaded: Callable[[], int], remaining: Callable[[], int]) -> Iterator[None]:
    """Turn a connection lost inside the block into one line (what is committed, what is not).

    Args:
        loaded: called on failure: images this run has committed.
        remaining: called on failure: images not loaded yet.

    Raises:
        pgvision.errors.DatabaseUnreachable: the connection was lost (see
            :func:`pgvision.server.connection.lost_connection`); other driver errors pass unchanged.
    """
    try:
        yield
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise lost_connection(exc, loaded(), remaining()) from None


def finish_load(
    conn: psycopg.Connection,
    report: LoadReport,
    model_id: int,
    *,
    tables: tuple[str, ...],
    changed: bool,
    build_index: bool,
    progress: bool,
    loaded: int,
) -> None:
    """The end of every load: statistics, index, recall setting; fills ``report``.

    ``ANALYZE`` of ``tables`` when ``changed``; with ``build_index`` the model's ANN index
    (:func:`pgvision.index.ddl.ensure_index`, built only when missing) and the own index of
    each collection large enough (:mod:`pgvision.index.collection_index`), the ef_search /
    probes setting re-chosen when the model grew past its recall rule
    (:func:`pgvision.index.recall_target.recheck`), and the index size. Sets
    ``report.index``, ``report.recall``, ``report.index_mb`` and ``report.seconds["index"]``.

    Raises:
        pgvision.errors.DatabaseUnreachable: the connection was lost; the ``loaded`` rows
            stay committed, a rerun builds the index.
    """
    # One load's last step at a time (ddl.maintenance_lock): ANALYZE beside another load's
    # concurrent index build on the same table deadlocks.
    with connection_lost_guard(lambda: loaded, lambda: 0), ddl.maintenance_lock(conn):
        if changed:
            build_progress.analyze(conn, *tables)
        if not build_index:
            return
        t = time.perf_counter()
        report.index = ddl.ensure_index(conn, model_id, progress=progress)
        if report.index:  # large collections get their own partial index (schema owner only)
            collection_index.ensure_collection_indexes(conn, model_id)
        choice = recall_target.recheck(conn, model_id)
        report.recall = recall_target.describe(choice) if choice else None
        report.seconds["index"] = report.seconds.get("index", 0.0) + time.perf_counter() - t
        report.index_mb = build_progress.index_mb(conn, report.index)
