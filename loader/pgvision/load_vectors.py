"""Store vectors computed elsewhere (``pgvision load-vectors``); no torch, no Pillow.

The core install (no extras) runs this path: :mod:`pgvision.ingest.vector_files` reads the file,
:func:`load_vectors` registers the model and stores the rows by binary COPY
(:func:`pgvision.ingest.pg_copy.copy_image_embeddings`), a transaction per batch, idempotent.
"""

from __future__ import annotations

import time

import psycopg
from tqdm import tqdm

from pgvision import registry
from pgvision.after_load import LoadSummary, recheck_recall
from pgvision.index import build_progress, ddl
from pgvision.ingest import pg_copy, row_limits
from pgvision.ingest.vector_files import l2_normalize
from pgvision.server.connection import lost_connection


def load_vectors(
    conn: psycopg.Connection,
    vector_set,
    spec,
    *,
    batch_size: int = 5000,
    build_index: bool = True,
    progress: bool = True,
) -> LoadSummary:
    """Store vectors computed elsewhere (:class:`pgvision.ingest.vector_files.VectorSet`); idempotent.

    Args:
        conn: autocommit connection (each batch commits on its own).
        vector_set: what :func:`pgvision.ingest.vector_files.read_vectors` returned.
        spec: the :class:`pgvision.registry.ModelSpec` to register them under; vectors are
            L2-normalised first when ``spec.normalized``.
        batch_size: rows per transaction (default 5,000).

    Returns:
        :class:`LoadSummary` (``decode`` is the file's parse time, not counted here).

    Raises:
        pgvision.errors.ModelMismatch: ``spec.name`` exists with other dims or metric.
        pgvision.errors.DatabaseUnreachable: connection lost; a rerun loads the rest.
    """
    t_start = time.perf_counter()
    model_id = registry.register_model(conn, spec)
    summary = LoadSummary(model=spec.name, model_id=model_id, found=len(vector_set.ids), unit="vectors")
    seconds = {"embed": 0.0, "copy": 0.0, "index": 0.0}
    records = vector_set.records()
    vectors = l2_normalize(vector_set.vectors) if spec.normalized else vector_set.vectors
    bar = tqdm(total=len(records), unit="vec", disable=not progress, desc=f"loading vectors ({spec.name})")
    try:
        for i in range(0, len(records), batch_size):
            chunk, emb = records[i : i + batch_size], vectors[i : i + batch_size]
            t = time.perf_counter()
            try:
                present = pg_copy.loaded_sha256(conn, model_id, [r.sha256 for r in chunk])
                keep = [j for j, r in enumerate(chunk) if r.sha256 not in present]
                fits, rejected = row_limits.split_oversized([chunk[j] for j in keep])
                for j, reason in rejected:
                    summary.skipped["too-large"] += 1
                    summary.skipped_files.append((chunk[keep[j]].uri, "too-large", reason))
                keep = [keep[j] for j in fits]
                written = pg_copy.copy_image_embeddings(
                    conn, model_id, [chunk[j] for j in keep], emb[keep], dims=spec.dims
                ) if keep else 0
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                raise lost_connection(exc, summary.loaded, len(records) - i) from None
            seconds["copy"] += time.perf_counter() - t
            summary.loaded += written
            summary.already_present += len(present)
            summary.duplicates += len(keep) - written
            bar.update(len(chunk))
    finally:
        bar.close()
    if summary.loaded:
        build_progress.analyze(conn, "images", "image_embeddings")
    if build_index:
        t = time.perf_counter()
        summary.index = ddl.ensure_index(conn, model_id, progress=progress)
        summary.recall = recheck_recall(conn, model_id)
        seconds["index"] = time.perf_counter() - t
        summary.index_mb = build_progress.index_mb(conn, summary.index)
    seconds["total"] = time.perf_counter() - t_start
    summary.seconds = seconds
    return summary
