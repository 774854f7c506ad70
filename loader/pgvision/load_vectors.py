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
from pgvision.after_load import LoadSummary, connection_lost_guard, finish_load
from pgvision.ingest import pg_copy, row_limits
from pgvision.ingest.vector_files import l2_normalize
from pgvision.tenancy.collection import DEFAULT_COLLECTION, use_collection


def load_vectors(
    conn: psycopg.Connection,
    vector_set,
    spec,
    *,
    batch_size: int = 5000,
    build_index: bool = True,
    progress: bool = True,
    collection: str = DEFAULT_COLLECTION,
) -> LoadSummary:
    """Store vectors computed elsewhere (:class:`pgvision.ingest.vector_files.VectorSet`); idempotent.

    Args:
        conn: autocommit connection (each batch commits on its own).
        vector_set: what :func:`pgvision.ingest.vector_files.read_vectors` returned.
        spec: the :class:`pgvision.registry.ModelSpec` to register them under; vectors are
            L2-normalised first when ``spec.normalized``.
        batch_size: rows per transaction (default 5,000).
        collection: the collection (tenant) the rows go into, created when absent and the
            role may (:func:`pgvision.tenancy.collection.use_collection`).

    Returns:
        :class:`LoadSummary` (``decode`` is the file's parse time, not counted here).

    Raises:
        pgvision.errors.ModelMismatch: ``spec.name`` exists with other dims or metric.
        pgvision.errors.DatabaseUnreachable: connection lost; a rerun loads the rest.
        pgvision.tenancy.collection.CollectionError: ``collection`` is not a valid name, or
            not granted to this role; nothing is written.
    """
    t_start = time.perf_counter()
    use_collection(conn, collection)
    model_id = registry.register_model(conn, spec)
    summary = LoadSummary(model=spec.name, model_id=model_id, found=len(vector_set.ids), unit="vectors")
    summary.seconds = {"embed": 0.0, "copy": 0.0, "index": 0.0}
    records = vector_set.records()
    vectors = l2_normalize(vector_set.vectors) if spec.normalized else vector_set.vectors
    done = 0
    bar = tqdm(total=len(records), unit="vec", disable=not progress, desc=f"loading vectors ({spec.name})",
               leave=False)  # cleared before the summary line
    with connection_lost_guard(lambda: summary.loaded, lambda: len(records) - done), bar:
        for done in range(0, len(records), batch_size):
            _copy_batch(conn, summary, spec, records[done : done + batch_size], vectors[done : done + batch_size])
            bar.update(len(records[done : done + batch_size]))
    finish_load(conn, summary, model_id, tables=("images", "image_embeddings"), changed=summary.loaded > 0,
                build_index=build_index, progress=progress, loaded=summary.loaded)
    summary.seconds["total"] = time.perf_counter() - t_start
    return summary


def _copy_batch(conn: psycopg.Connection, summary: LoadSummary, spec, chunk: list, emb) -> None:
    """Store one batch (rows not loaded yet, within the row limits) in one transaction."""
    t = time.perf_counter()
    present = pg_copy.loaded_sha256(conn, summary.model_id, [r.sha256 for r in chunk])
    keep = [j for j, r in enumerate(chunk) if r.sha256 not in present]
    fits, rejected = row_limits.split_oversized([chunk[j] for j in keep])
    for j, reason in rejected:
        summary.skip(chunk[keep[j]].uri, "too-large", reason)
    keep = [keep[j] for j in fits]
    written = pg_copy.copy_image_embeddings(
        conn, summary.model_id, [chunk[j] for j in keep], emb[keep], dims=spec.dims
    ) if keep else 0
    summary.seconds["copy"] += time.perf_counter() - t
    summary.loaded += written
    summary.already_present += len(present)
    summary.duplicates += len(keep) - written
