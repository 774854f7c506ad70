"""Embeddings into PostgreSQL with binary ``COPY``, one transaction per batch.

Per batch, in one transaction:

1. ``pg_advisory_xact_lock`` on the model: two loaders of the same model take turns per
   batch (embedding, the slow part, still runs in parallel), so the existence check
   below cannot race and no duplicate is ever attempted;
2. the batch's images are upserted (``INSERT ... SELECT FROM unnest(arrays) ON CONFLICT
   (collection_id, sha256) DO NOTHING``: one round trip) and their ``image_id``s read back;
   an image is unique within its collection, the session's (:mod:`pgvision.tenancy.collection`);
3. embeddings not stored yet for this model go straight into ``image_embeddings`` by binary
   ``COPY``, the rows encoded by numpy in one vectorised pass (no per-row Python).

Why no staging table: COPY into a temporary table followed by ``INSERT ... SELECT`` writes
every vector twice; under the per-model lock the existence check makes the direct COPY as
safe (bench/bench_ingest.py measures both). A batch either lands whole or not at all, so a
killed loader loses nothing it committed and a rerun loads only the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgvision.errors import InvalidValue
from pgvision.tenancy.collection import SESSION_COLLECTION_SQL

#: First key of pgvision's advisory locks ('pgvs'); the second is the model_id.
LOCK_CLASS = 0x70677673

#: Models over this many dims are indexed as ``halfvec`` (see :mod:`pgvision.index.ddl`).
HALFVEC_ABOVE = 2000
#: Largest finite float16 magnitude (IEEE 754 binary16): a larger value cannot be cast to
#: ``halfvec`` and the index build fails (pgvector: "value out of range for type halfvec").
HALFVEC_MAX = 65504.0

_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = b"\xff\xff"


@dataclass(frozen=True)
class ImageRecord:
    """One image row of ``pgvision.images``.

    Attributes:
        sha256: 32-byte digest of the file's bytes (the identity of an image).
        uri: where it was read from (path or URL).
        label: class or folder name; None when unlabelled.
        width, height: pixels of the upright image; None when unknown.
        metadata: any JSON object (``search_images(filter => ...)`` matches it with ``@>``).
        phash: 64 ``'0'``/``'1'`` characters, the image's pHash (``images.phash``); None
            when not computed (``pgvision duplicates --fill-hashes`` fills it in later).
        phash_crops: 576 ``'0'``/``'1'`` characters, its nine crops' pHashes
            (:mod:`pgvision.ingest.perceptual_hash`); None with ``phash``.
    """

    sha256: bytes
    uri: str
    label: str | None = None
    width: int | None = None
    height: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    phash: str | None = None
    phash_crops: str | None = None


def encode_copy_binary(model_id: int, ids: np.ndarray, embeddings: np.ndarray) -> bytes:
    """Encode ``(model_id, id, embedding)`` rows in PostgreSQL's binary COPY format.

    Each row is fixed width, so numpy writes all rows at once: field count (int16 = 3), then
    per field an int32 byte length and the big-endian value; pgvector's binary ``vector``
    is int16 dims, int16 unused, then float32 values (pgvector src/vector.c, vector_send).

    Args:
        model_id: value of the ``model_id`` column.
        ids: shape (N,), integer: ``image_id`` or ``face_id`` values.
        embeddings: shape (N, D), float32 (other float dtypes are converted).

    Returns:
        The whole COPY payload: header, N rows, trailer.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    n, dims = emb.shape
    row = np.dtype(
        [("nfields", ">i2"), ("len_model", ">i4"), ("model", ">i4"), ("len_id", ">i4"), ("id", ">i8"),
         ("len_vec", ">i4"), ("dims", ">i2"), ("unused", ">i2"), ("vec", ">f4", (dims,))]
    )
    rows = np.empty(n, dtype=row)
    rows["nfields"] = 3
    rows["len_model"] = 4
    rows["model"] = model_id
    rows["len_id"] = 8
    rows["id"] = np.asarray(ids, dtype=np.int64)
    rows["len_vec"] = 4 + 4 * dims
    rows["dims"] = dims
    rows["unused"] = 0
    rows["vec"] = emb
    return _HEADER + rows.tobytes() + _TRAILER


def check_embeddings(embeddings: np.ndarray, dims: int, names: Sequence[str]) -> np.ndarray:
    """Validate a batch before anything is written.

    Args:
        embeddings: shape (N, dims), float.
        dims: the model's registered dimension.
        names: N names (uris) for error messages.

    Returns:
        The embeddings as C-contiguous float32.

    Raises:
        ValueError: wrong shape or dimension, or a NaN/inf value (pgvector rejects them).
    """
    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != len(names):
        raise InvalidValue(f"expected embeddings of shape ({len(names)}, {dims}), got {tuple(emb.shape)}")
    if emb.shape[1] != dims:
        raise InvalidValue(
            f"the model is registered with {dims}-d vectors but this batch has {emb.shape[1]}-d: "
            "load under another model name"
        )
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidValue(f"embedding of {names[i]} has NaN or infinite values; pgvector stores finite floats only")
    if emb.shape[1] > HALFVEC_ABOVE:
        big = (np.abs(emb) > HALFVEC_MAX).any(axis=1)
        if big.any():
            i = int(np.flatnonzero(big)[0])
            raise InvalidValue(
                f"embedding of {names[i]} has values beyond +-{HALFVEC_MAX:,.0f}, which the halfvec index of a "
                f"{emb.shape[1]}-d model cannot hold (largest: {float(np.abs(emb[i]).max()):.4g}): "
                "L2-normalize the vectors or scale them down"
            )
    return emb


def copy_vectors(conn: psycopg.Connection, table: str, item_column: str, model_id: int,
                 ids: np.ndarray, embeddings: np.ndarray) -> None:
    """Binary ``COPY`` of ``(model_id, item_column, embedding)`` rows into ``pgvision.<table>``.

    Runs in the caller's transaction; no existence check (see :func:`copy_image_embeddings`).
    For a role under row-level security (a loader scoped to collections: PostgreSQL refuses
    ``COPY FROM`` into a table whose policies apply to the caller) the rows are copied into a
    temporary table (dropped at commit) first and moved by one ``INSERT ... SELECT``, which
    the policies check; the schema owner copies straight into the table.
    """
    if len(ids) == 0:
        return
    payload = encode_copy_binary(model_id, ids, embeddings)
    item = sql.Identifier(item_column)
    target = sql.SQL("pgvision.{}").format(sql.Identifier(table))
    if not conn.execute("SELECT row_security_active(%s::regclass)", (f"pgvision.{table}",)).fetchone()[0]:
        with conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {} (model_id, {}, embedding) FROM STDIN (FORMAT BINARY)").format(target, item)) as copy:
            copy.write(payload)
        return
    stage = sql.SQL("pg_temp.{}").format(sql.Identifier(f"pgvision_stage_{table}"))
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ON COMMIT DROP AS "
                             "SELECT model_id, {}, embedding FROM {} WITH NO DATA").format(stage, item, target))
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))
        with conn.cursor() as cur, cur.copy(
                sql.SQL("COPY {} (model_id, {}, embedding) FROM STDIN (FORMAT BINARY)").format(stage, item)) as copy:
            copy.write(payload)
        conn.execute(sql.SQL("INSERT INTO {0} (model_id, {1}, embedding) SELECT model_id, {1}, embedding FROM {2}")
                     .format(target, item, stage))
        conn.execute(sql.SQL("TRUNCATE {}").format(stage))


#: Longest wait, in seconds, for another session's per-model batch lock. A batch holds it
#: for one COPY (well under a second for 32 images); a session holding it for a minute is
#: stuck or hostile, and the load stops with its pid rather than waiting forever.
MODEL_LOCK_TIMEOUT_S = 60


def lock_holders(conn: psycopg.Connection, classid: int, objid: int) -> str:
    """``pid 123 (user alice, application psql)`` for each session holding advisory lock (classid, objid)."""
    rows = conn.execute(
        "SELECT l.pid, a.usename, a.application_name FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = (%s::bigint & 4294967295)::oid "
        "AND l.objid = (%s::bigint & 4294967295)::oid AND l.objsubid = 2",
        (classid, objid),
    ).fetchall()
    if not rows:
        return "a session that has since let go"
    return ", ".join(f"pid {pid} (user {user or '?'}, application {app or '?'})" for pid, user, app in rows)


#: Seconds a batch waits for the per-model lock without a word (another loader's batch
#: holds it well under a second); past it one line on stderr names the holder.
MODEL_LOCK_QUIET_S = 2.0


def lock_model(conn: psycopg.Connection, model_id: int, timeout_s: float = MODEL_LOCK_TIMEOUT_S,
               quiet_s: float = MODEL_LOCK_QUIET_S) -> None:
    """Take the per-model advisory lock until the end of the current transaction.

    Any session may take an advisory lock (PostgreSQL has no privilege for them), so a
    reader's ``pg_advisory_lock`` on this key would block loads: after ``quiet_s`` seconds of
    waiting, one line on stderr names the holding session (pid, user, application) and how
    long the load still waits.

    Raises:
        pgvision.errors.LockTimeout: another session held it for ``timeout_s`` seconds; the
            message names that session's pid.
    """
    import sys

    from pgvision.errors import LockTimeout

    def wait(seconds: float) -> bool:
        old = conn.execute(
            "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
            (f"{max(1, int(seconds * 1000))}ms",),
        ).fetchone()[0]
        try:
            with conn.transaction():  # a savepoint: the timeout leaves the batch's transaction usable
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, model_id))
            return True
        except psycopg.errors.LockNotAvailable:
            return False
        finally:
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (old,))

    quiet = min(quiet_s, timeout_s)
    if wait(quiet):
        return
    print(f"pgvision: waiting for model {model_id}'s load lock, held by {lock_holders(conn, LOCK_CLASS, model_id)} "
          f"(up to {timeout_s:g} s in all)", file=sys.stderr, flush=True)
    if timeout_s > quiet and wait(timeout_s - quiet):
        return
    raise LockTimeout(
        f"model {model_id} has been locked for {timeout_s:g} s by {lock_holders(conn, LOCK_CLASS, model_id)}, "
        "another loader or a stuck session: wait for it to finish, or ask whoever runs that pid (or a database "
        "admin) to end it, then rerun"
    )


def upsert_images(conn: psycopg.Connection, records: Sequence[ImageRecord]) -> dict[bytes, int]:
    """Insert images not stored yet (by sha256) and return ``{sha256: image_id}`` for all.

    Images are looked up and inserted in the session's collection
    (:func:`pgvision.tenancy.collection.use_collection`; ``default`` when none was set).
    """
    return _upsert_images(conn, records)[0]


def _upsert_images(conn: psycopg.Connection, records: Sequence[ImageRecord]) -> tuple[dict[bytes, int], set[bytes]]:
    """:func:`upsert_images`, also returning the digests this call inserted.

    The ``INSERT ... RETURNING`` gives the new rows' ids in the same round trip; only digests
    that were already stored (or inserted meanwhile by another transaction, which
    ``ON CONFLICT DO NOTHING`` skipped) are looked up by a second query, which a fresh load
    never needs (bench/bench_ingest.py: the lookup was a quarter of the upsert's time).
    """
    if not records:
        return {}, set()
    # Binary parameters (%b) and NULL for empty metadata: parsing 5,000-element arrays in
    # text form (hex bytea, one jsonb parse per row) was half the upsert's time; binary
    # arrays cost 5-10x less on the server (bench/bench_ingest.py).
    rows = conn.execute(
        """
        INSERT INTO pgvision.images (sha256, uri, label, width, height, metadata, phash, phash_crops)
        SELECT u.sha256, u.uri, u.label, u.width, u.height, coalesce(u.metadata, '{}'),
               u.phash::bit(64), u.phash_crops::bit(576)
        FROM unnest(%b::bytea[], %b::text[], %b::text[], %b::int[], %b::int[], %b::jsonb[], %b::text[], %b::text[])
             AS u(sha256, uri, label, width, height, metadata, phash, phash_crops)
        ON CONFLICT (collection_id, sha256) DO NOTHING
        RETURNING sha256, image_id
        """,
        (
            [r.sha256 for r in records],
            [r.uri for r in records],
            [r.label for r in records],
            [r.width for r in records],
            [r.height for r in records],
            [Jsonb(r.metadata) if r.metadata else None for r in records],
            [r.phash for r in records],
            [r.phash_crops for r in records],
        ),
    ).fetchall()
    ids = {bytes(sha): image_id for sha, image_id in rows}
    new = set(ids)
    missing = list({r.sha256 for r in records} - new)
    if missing:
        rows = conn.execute(
            "SELECT sha256, image_id FROM pgvision.images WHERE sha256 = ANY(%b) "
            f"AND collection_id = {SESSION_COLLECTION_SQL}", (missing,)
        ).fetchall()
        ids.update((bytes(sha), image_id) for sha, image_id in rows)
    return ids, new


def loaded_sha256(conn: psycopg.Connection, model_id: int, digests: Sequence[bytes]) -> set[bytes]:
    """The digests among ``digests`` whose image (in the session's collection) already has an
    embedding of ``model_id``.

    The loader asks this before decoding, so a rerun skips loaded files at hashing cost.
    """
    if not digests:
        return set()
    rows = conn.execute(
        f"""
        SELECT i.sha256 FROM pgvision.images i
        JOIN pgvision.image_embeddings e ON e.image_id = i.image_id AND e.model_id = %s
        WHERE i.sha256 = ANY(%b) AND i.collection_id = {SESSION_COLLECTION_SQL}
        """,
        (model_id, list(digests)),
    ).fetchall()
    return {bytes(r[0]) for r in rows}


def copy_image_embeddings(conn: psycopg.Connection, model_id: int, records: Sequence[ImageRecord],
                          embeddings: np.ndarray, dims: int | None = None) -> int:
    """Store one batch of images and their embeddings of ``model_id``; idempotent.

    Args:
        conn: psycopg connection. In autocommit mode (recommended) the batch commits here;
            otherwise it runs in a savepoint and the caller commits.
        model_id: registered model (``registry.register_model``).
        records: N images.
        embeddings: shape (N, D) float32, row i belongs to ``records[i]``.
        dims: the model's D, checked when given.

    Returns:
        Number of embeddings written (already stored ones are skipped).

    Raises:
        ValueError: shape, dimension or non-finite values; nothing is written.
    """
    emb = check_embeddings(embeddings, dims or np.shape(embeddings)[-1], [r.uri for r in records])
    with conn.transaction():
        lock_model(conn, model_id)
        image_ids, new = _upsert_images(conn, records)
        ids = np.array([image_ids[r.sha256] for r in records], dtype=np.int64)
        # An image this transaction just inserted has no embedding yet: check only the others.
        old = [image_ids[sha] for sha in {r.sha256 for r in records} - new]
        stored = {
            r[0]
            for r in conn.execute(
                "SELECT image_id FROM pgvision.image_embeddings WHERE model_id = %s AND image_id = ANY(%b)",
                (model_id, old),
            )
        } if old else set()
        _, first = np.unique(ids, return_index=True)  # one row per image within the batch
        keep = np.array(sorted(i for i in first if ids[i] not in stored), dtype=np.int64)
        copy_vectors(conn, "image_embeddings", "image_id", model_id, ids[keep], emb[keep])
    return len(keep)
