"""Tiny hand-checkable face galleries for the people tests (2-d vectors, L2)."""

from __future__ import annotations

import hashlib

import numpy as np

from pgvision.ingest.pg_copy import copy_vectors
from pgvision.registry import ModelSpec, register_model

#: Two groups of four faces joined by one close pair only (max_distance 0.3):
#: A = a0 (0, 0), a1 (0, 0.1), a2 (0.1, 0.05), a3 (0.2, 0.05);
#: C = c0 (0.45, 0.05), c1 (0.55, 0), c2 (0.55, 0.1), c3 (0.65, 0.05).
#: Within A every face has >= 2 others within 0.3 (a0-a1 0.1, a0-a2 0.112, a0-a3 0.206,
#: a1-a2 0.112, a1-a3 0.206, a2-a3 0.1), likewise within C (c0-c1 0.112, c0-c2 0.112,
#: c0-c3 0.2, c1-c2 0.1, c1-c3 0.112, c2-c3 0.112). Across: a3-c0 = 0.25 is the only pair
#: within 0.3 (a2-c0 0.35, a3-c1 0.354, a3-c2 0.354). a3 and c0 share no neighbour.
#: Noise: n0 (5, 5) alone; a pair p0 (3, 0), p1 (3.1, 0) (0.1 apart: 2 faces < min_faces 3).
LOOKALIKES = {
    "a0": (0.0, 0.0),
    "a1": (0.0, 0.1),
    "a2": (0.1, 0.05),
    "a3": (0.2, 0.05),
    "c0": (0.45, 0.05),
    "c1": (0.55, 0.0),
    "c2": (0.55, 0.1),
    "c3": (0.65, 0.05),
    "n0": (5.0, 5.0),
    "p0": (3.0, 0.0),
    "p1": (3.1, 0.0),
}


def add_faces(conn, faces: dict, *, model: str = "face2d", photo: dict | None = None, threshold: float = 0.5):
    """Store one face per key (its own photo, or ``photo[key]``: a shared photo name); return {key: face_id}.

    Boxes are (0, 0, 10, 10) shifted right by 20 px per face already in the photo.
    """
    model_id = register_model(conn, ModelSpec(model, "face", 2, "l2", threshold=threshold))
    ids = {}
    for key, vec in faces.items():
        name = (photo or {}).get(key, key)
        digest = hashlib.sha256(name.encode()).digest()
        row = conn.execute("SELECT image_id FROM pgvision.images WHERE sha256 = %s", (digest,)).fetchone()
        image_id = (
            row[0]
            if row
            else conn.execute(
                "INSERT INTO pgvision.images (sha256, uri, width, height) VALUES (%s, %s, 100, 100) RETURNING image_id",
                (digest, f"file:///{name}.jpg"),
            ).fetchone()[0]
        )
        left = 20 * conn.execute("SELECT count(*) FROM pgvision.faces WHERE image_id = %s", (image_id,)).fetchone()[0]
        face_id = conn.execute(
            "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom) "
            "VALUES (%s, 'test', %s, 0, %s, 10) RETURNING face_id",
            (image_id, left, left + 10),
        ).fetchone()[0]
        copy_vectors(conn, "face_embeddings", "face_id", model_id, np.array([face_id]), np.array([vec], np.float32))
        ids[key] = face_id
    return ids


def people_of(conn, ids: dict) -> dict:
    """{key: identity_id or None} for the faces of ``ids``."""
    rows = dict(
        conn.execute(
            "SELECT face_id, identity_id FROM pgvision.faces WHERE face_id = ANY(%s)", (list(ids.values()),)
        ).fetchall()
    )
    return {k: rows[v] for k, v in ids.items()}


def groups(conn, ids: dict) -> list[set]:
    """The faces of ``ids`` grouped by person (sorted by their smallest key), unassigned left out."""
    by = {}
    for key, person in people_of(conn, ids).items():
        if person is not None:
            by.setdefault(person, set()).add(key)
    return sorted(by.values(), key=min)
