"""Faces into PostgreSQL: images, faces, scans and face embeddings, one transaction a batch.

The same path as the image loader (:mod:`pgvision.ingest.pg_copy`): per batch, under the model's
advisory lock, the images are upserted by sha256, the faces inserted (``ON CONFLICT DO
NOTHING`` on image + detector + box), their embeddings written by binary ``COPY``
(:func:`pgvision.ingest.pg_copy.copy_vectors`) for the faces that have none of this model yet, and
one ``face_scans`` row per image records how many faces the detector found (0 included:
an image without a face is recorded, not dropped). A batch lands whole or not at all, so a
killed load loses nothing committed and a rerun does only the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import psycopg

from pgvision.errors import AlreadyEnrolled, PgvisionError
from pgvision.faces.detect import Face
from pgvision.faces.embed import FaceModel
from pgvision.ingest import pg_copy
from pgvision.ingest.pg_copy import ImageRecord
from pgvision.registry import ModelSpec, register_model
from pgvision.tenancy.collection import SESSION_COLLECTION_SQL


@dataclass
class ScannedPhoto:
    """One photo after detection and embedding, ready to store.

    Attributes:
        record: its ``pgvision.images`` row.
        faces: faces to store, largest first.
        embeddings: (len(faces), D) float32, row i for ``faces[i]``.
        identity: name to enroll the largest face under, or None.
    """

    record: ImageRecord
    faces: list[Face]
    embeddings: np.ndarray
    identity: str | None = None


@dataclass
class StoreCounts:
    """What :func:`store_photos` wrote."""

    faces: int = 0
    embeddings: int = 0
    enrolled: int = 0
    face_ids: dict[bytes, list[int]] = field(default_factory=dict)


def face_model_spec(model: FaceModel) -> ModelSpec:
    """The registry row of a face model (threshold = its published default)."""
    return ModelSpec(
        name=model.name, kind="face", dims=model.dims, metric=model.metric,
        normalized=model.metric == "cosine",
        preprocessing={"alignment": "dlib 5-point get_face_chip", "chip_size": model.chip_size,
                       "chip_padding": model.chip_padding, "description": model.preprocessing},
        weights_sha256=model.weights_sha256, threshold=model.threshold, min_margin=model.min_margin,
    )


def register_face_model(conn: psycopg.Connection, model: FaceModel) -> int:
    """Register (or check) a face model and return its ``model_id``.

    An existing row keeps its threshold (a calibrated one must not be reset by a load).

    Raises:
        pgvision.errors.ModelMismatch: the name is registered with other dims/metric/weights.
    """
    with conn.transaction():
        return register_model(conn, face_model_spec(model))


#: Longest identity name, in characters (``identities.name``'s CHECK, migration 0001).
MAX_NAME_CHARS = 200


class BadIdentityName(PgvisionError, ValueError):
    """An identity name that ``pgvision.identities`` cannot hold (empty, or too long)."""


def check_identity_name(name: str) -> str:
    """Return ``name`` if it can name an identity.

    Raises:
        BadIdentityName: empty, or longer than :data:`MAX_NAME_CHARS`; the message shows at
            most its first 40 characters, escaped for a terminal.
    """
    if not name or len(name) > MAX_NAME_CHARS:
        from pgvision.text import display

        shown = display(name[:40]) + ("..." if len(name) > 40 else "")
        raise BadIdentityName(
            f"an identity name must be 1 to {MAX_NAME_CHARS} characters, got {len(name)} ('{shown}'): "
            "give a shorter, non-empty name"
        )
    return name


def ensure_identity(conn: psycopg.Connection, name: str) -> int:
    """``identity_id`` of ``name`` in the session's collection, created when absent.

    Raises:
        BadIdentityName: see :func:`check_identity_name`.
    """
    check_identity_name(name)
    row = conn.execute(
        "INSERT INTO pgvision.identities (name) VALUES (%s) ON CONFLICT (collection_id, name) DO NOTHING "
        "RETURNING identity_id",
        (name,),
    ).fetchone()
    if row is None:
        row = conn.execute("SELECT identity_id FROM pgvision.identities WHERE name = %s "
                           f"AND collection_id = {SESSION_COLLECTION_SQL}", (name,)).fetchone()
    return row[0]


def done_sha256(conn: psycopg.Connection, model_id: int, detector: str, digests: Sequence[bytes]) -> set[bytes]:
    """Digests among ``digests`` already scanned with ``detector`` whose every face has an
    embedding of ``model_id`` (images with no face count as done once scanned)."""
    if not digests:
        return set()
    rows = conn.execute(
        f"""
        SELECT i.sha256 FROM pgvision.images i
        JOIN pgvision.face_scans s ON s.image_id = i.image_id AND s.detector = %(det)s
        WHERE i.sha256 = ANY(%(d)s) AND i.collection_id = {SESSION_COLLECTION_SQL}
          AND s.faces = (SELECT count(*) FROM pgvision.faces f
                         JOIN pgvision.face_embeddings e ON e.face_id = f.face_id AND e.model_id = %(m)s
                         WHERE f.image_id = i.image_id AND f.detector = %(det)s)
        """,
        {"det": detector, "d": list(digests), "m": model_id},
    ).fetchall()
    return {bytes(r[0]) for r in rows}


def assign_faces(conn: psycopg.Connection, face_ids: Sequence[int], identity_id: int, identity: str,
                 reassign: bool = False) -> int:
    """Put ``face_ids`` in the gallery of ``identity_id`` (named ``identity``); return how many changed.

    Raises:
        pgvision.errors.AlreadyEnrolled: one of the faces is in another identity's gallery
            and ``reassign`` is false; nothing is changed.
    """
    if not reassign:
        row = conn.execute(
            "SELECT i.name, im.uri FROM pgvision.faces f "
            "JOIN pgvision.identities i ON i.identity_id = f.identity_id "
            "JOIN pgvision.images im ON im.image_id = f.image_id "
            "WHERE f.face_id = ANY(%s) AND f.identity_id <> %s ORDER BY f.face_id LIMIT 1",
            (list(face_ids), identity_id),
        ).fetchone()
        if row:
            raise AlreadyEnrolled(
                f"the face in {row[1]} is already enrolled as {row[0]!r}: pass --reassign to move it to "
                f"{identity!r}, or leave that photo out"
            )
    cur = conn.execute(
        "UPDATE pgvision.faces SET identity_id = %s WHERE face_id = ANY(%s) AND identity_id IS DISTINCT FROM %s",
        (identity_id, list(face_ids), identity_id),
    )
    return cur.rowcount


def enroll_stored(conn: psycopg.Connection, detector: str, digests: Sequence[bytes], identity: str,
                  reassign: bool = False) -> int:
    """Enroll the largest already-stored face of each image under ``identity``.

    Returns:
        Number of faces whose identity was set (images without a face are left alone).

    Raises:
        pgvision.errors.AlreadyEnrolled: see :func:`assign_faces`.
    """
    if not digests:
        return 0
    with conn.transaction():
        identity_id = ensure_identity(conn, identity)
        largest = [r[0] for r in conn.execute(
            f"""
            SELECT DISTINCT ON (f.image_id) f.face_id
            FROM pgvision.faces f JOIN pgvision.images i ON i.image_id = f.image_id
            WHERE i.sha256 = ANY(%s) AND f.detector = %s AND i.collection_id = {SESSION_COLLECTION_SQL}
            ORDER BY f.image_id, (f.box_right - f.box_left) DESC, f.face_id
            """,
            (list(digests), detector),
        )]
        return assign_faces(conn, largest, identity_id, identity, reassign) if largest else 0


def store_photos(conn: psycopg.Connection, model_id: int, dims: int, detector: str,
                 photos: Sequence[ScannedPhoto], reassign: bool = False) -> StoreCounts:
    """Store one batch of scanned photos; idempotent.

    Args:
        conn: psycopg connection in autocommit mode (the batch commits here).
        model_id: registered face model; dims: its dimension.
        detector: ``hog`` or ``cnn`` (part of a face's key and of its scan).
        photos: the batch.
        reassign: move a face already in another identity's gallery (else refuse).

    Returns:
        :class:`StoreCounts`; ``face_ids[sha256]`` lists the stored face ids of each photo,
        in the order of ``photo.faces``.

    Raises:
        ValueError: embeddings of the wrong shape or not finite; nothing is written.
        pgvision.errors.AlreadyEnrolled: see :func:`assign_faces`; the batch is not written.
    """
    counts = StoreCounts()
    for p in photos:
        pg_copy.check_embeddings(p.embeddings.reshape(len(p.faces), -1) if len(p.faces) else
                                 np.zeros((0, dims), np.float32), dims, [p.record.uri] * len(p.faces))
    with conn.transaction():
        pg_copy.lock_model(conn, model_id)
        image_ids = pg_copy.upsert_images(conn, [p.record for p in photos])
        rows = [
            (image_ids[p.record.sha256], detector, *f.box, [float(v) for v in f.landmarks.ravel()], f.score)
            for p in photos for f in p.faces
        ]
        if rows:
            with conn.cursor() as cur:
                cur.executemany(
                    """
                    INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom,
                                                landmarks, detector_score)
                    VALUES (%s, %s, %s, %s, %s, %s, %s::real[], %s)
                    ON CONFLICT (image_id, detector, box_left, box_top, box_right, box_bottom) DO NOTHING
                    """,
                    rows,
                )
                counts.faces = max(cur.rowcount, 0)
        stored = conn.execute(
            """
            SELECT f.image_id, f.box_left, f.box_top, f.box_right, f.box_bottom, f.face_id,
                   EXISTS (SELECT 1 FROM pgvision.face_embeddings e WHERE e.face_id = f.face_id AND e.model_id = %s)
            FROM pgvision.faces f WHERE f.image_id = ANY(%s) AND f.detector = %s
            """,
            (model_id, list(image_ids.values()), detector),
        ).fetchall()
        by_key = {(r[0], r[1], r[2], r[3], r[4]): (r[5], r[6]) for r in stored}
        ids, vecs, enroll = [], [], {}
        for p in photos:
            image_id = image_ids[p.record.sha256]
            face_ids = []
            for i, f in enumerate(p.faces):
                face_id, has_embedding = by_key[(image_id, *f.box)]
                face_ids.append(face_id)
                if not has_embedding and face_id not in ids:
                    ids.append(face_id)
                    vecs.append(p.embeddings[i])
            counts.face_ids[p.record.sha256] = face_ids
            if p.identity and face_ids:
                enroll.setdefault(p.identity, []).append(face_ids[0])
        if ids:
            pg_copy.copy_vectors(conn, "face_embeddings", "face_id", model_id,
                                 np.array(ids, dtype=np.int64), np.stack(vecs).astype(np.float32))
        counts.embeddings = len(ids)
        for name, face_ids in enroll.items():
            counts.enrolled += assign_faces(conn, face_ids, ensure_identity(conn, name), name, reassign)
        with conn.cursor() as cur:
            cur.executemany(
                """
                INSERT INTO pgvision.face_scans (image_id, detector, faces) VALUES (%s, %s, %s)
                ON CONFLICT (image_id, detector) DO UPDATE SET faces = EXCLUDED.faces, scanned_at = now()
                """,
                [(image_ids[p.record.sha256], detector, len(p.faces)) for p in photos],
            )
    return counts


def gallery_size(conn: psycopg.Connection, name: str, model: str) -> int:
    """Number of gallery faces identity ``name`` (of the session's collection) has embedded with
    face model ``model``."""
    return conn.execute(
        "SELECT count(*) FROM pgvision.faces f JOIN pgvision.identities i USING (identity_id) "
        "JOIN pgvision.face_embeddings e ON e.face_id = f.face_id "
        "JOIN pgvision.models m ON m.model_id = e.model_id AND m.name = %s "
        f"WHERE i.name = %s AND i.collection_id = {SESSION_COLLECTION_SQL}",
        (model, name),
    ).fetchone()[0]
