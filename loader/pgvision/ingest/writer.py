"""The loader's copy stage in a thread of its own, so the model never waits for PostgreSQL.

:class:`BatchWriter` takes batches (records + embeddings still being computed) through a
bounded queue and stores each with :func:`pgvision.ingest.pg_copy.copy_image_embeddings`, **one
transaction per batch** as before: a killed loader loses nothing it committed, and a rerun
loads the rest. While batch *k* is copied, the main process decodes and embeds batch *k+1*;
on a GPU, the writer is also where the host waits for the vectors
(:meth:`pgvision.models.embed.PendingEmbeddings.result`), so the main process can queue the next
batch's decoding and model kernels first.

The queue holds at most ``depth`` batches (default 2): a slow server slows the loader
down instead of filling memory. An error in the thread stops it from writing more and is
raised in the main process at the next :meth:`BatchWriter.submit` or at
:meth:`BatchWriter.close`, converted as the loader always did: a lost connection becomes
:func:`pgvision.server.connection.lost_connection`'s one line (what is committed, what a rerun loads).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Sequence

import numpy as np
import psycopg

from pgvision.errors import InvalidValue
from pgvision.ingest import pg_copy
from pgvision.ingest.pg_copy import ImageRecord
from pgvision.server.connection import lost_connection

__all__ = ["BatchWriter"]


class BatchWriter:
    """A thread that commits batches of image embeddings in order, one transaction each.

    Args:
        conn: autocommit connection (used by this thread only until :meth:`close`).
        model_id: the model's ``pgvision.models.model_id``.
        dims: its vector width.
        total_files: files this run is to load (for the lost-connection message).
        depth: batches that may wait in the queue (>= 1).
        on_batch: called **in the writer thread** with the number of embeddings this run
            has committed, after each batch that held records.

    Attributes:
        loaded: embeddings written; already_present: records a concurrent loader stored
            first; files_done: files of the committed batches (loaded or skipped);
        seconds: ``{"embed": s, "copy": s}``: model seconds (see
            :attr:`pgvision.models.embed.PendingEmbeddings.seconds`) and COPY seconds (wall clock).
    """

    def __init__(
        self,
        conn: psycopg.Connection,
        model_id: int,
        dims: int,
        *,
        total_files: int,
        depth: int = 2,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if depth < 1:
            raise InvalidValue(f"depth must be at least 1, got {depth}")
        self.conn, self.model_id, self.dims, self.total_files = conn, model_id, dims, total_files
        self.on_batch = on_batch
        self.loaded = self.already_present = self.files_done = 0
        self.seconds = {"embed": 0.0, "copy": 0.0}
        self._error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name="pgvision-writer", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[ImageRecord], vectors, files: int, rows: Sequence[int] | None = None) -> None:
        """Queue one batch; blocks while ``depth`` batches wait.

        Args:
            records: the batch's images, in the order of the vectors' rows.
            vectors: ``(len(records), dims)`` float32 array, or an object with ``result()``
                giving one (:class:`pgvision.models.embed.PendingEmbeddings`); None when no record.
            files: how many files of the run this batch settles (records + skipped files).
            rows: the rows of ``vectors`` that belong to ``records`` (None: all), e.g. after
                :func:`pgvision.ingest.row_limits.split_oversized` dropped some.

        Raises:
            pgvision.errors.DatabaseUnreachable: an earlier batch lost the connection.
            Exception: whatever else an earlier batch raised in the thread (e.g. the model's
                ``ValueError`` on a wrong width, a psycopg error from the server).
        """
        self.raise_error()
        self._queue.put((list(records), vectors, files, None if rows is None else list(rows)))

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise its error if it had one."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self.raise_error()

    def abandon(self, timeout: float = 60.0) -> None:
        """Stop after the batches already queued; never raises (the caller is failing already).

        Waits at most ``timeout`` seconds for the thread (a server that stopped answering
        must not hang an interrupted load); a batch still being written then either commits
        or not, as the transaction decides.
        """
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=timeout)
            except queue.Full:
                return
            self._thread.join(timeout)

    def raise_error(self) -> None:
        """Raise the thread's error, if any, as the main process reports it."""
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            raise lost_connection(exc, self.loaded, self.total_files - self.files_done) from None
        raise exc

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            if self._error is not None:
                continue  # after a failure nothing more is written; keep draining so submit never blocks
            try:
                self._write(*job)
            except BaseException as exc:  # noqa: BLE001 (re-raised in the main process)
                self._error = exc

    def _write(self, records: list[ImageRecord], vectors, files: int, rows: list[int] | None) -> None:
        if hasattr(vectors, "result"):
            pending, vectors = vectors, vectors.result()
            self.seconds["embed"] += pending.seconds
        if records:
            if rows is not None:
                vectors = vectors[rows]
            t = time.perf_counter()
            written = pg_copy.copy_image_embeddings(
                self.conn, self.model_id, records, np.asarray(vectors, dtype=np.float32), dims=self.dims
            )
            self.seconds["copy"] += time.perf_counter() - t
            self.loaded += written
            self.already_present += len(records) - written  # a concurrent loader won
        self.files_done += files
        if records and self.on_batch:
            self.on_batch(self.loaded)
