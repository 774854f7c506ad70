"""Small helpers for the SQL tests: register a model and store hand-made vectors."""

from __future__ import annotations

import hashlib

import numpy as np

from pgvision.ingest.pg_copy import ImageRecord, copy_image_embeddings, copy_vectors
from pgvision.registry import ModelSpec, register_model

#: Model 'tiny' (3-d, L2): the query [1, 0, 0] is at distance a: 0, b: sqrt(0.02) = 0.1414,
#: e: sqrt(0.5) = 0.7071, c and d: sqrt(2) = 1.4142. Rows: (name, label, vector, metadata?).
TINY_ROWS = [
    ("a", "cat", [1.0, 0.0, 0.0], {"camera": "x100"}),
    ("b", "cat", [0.9, 0.1, 0.0], {"camera": "z6"}),
    ("c", "dog", [0.0, 1.0, 0.0], {"camera": "x100"}),
    ("d", "dog", [0.0, 0.0, 1.0]),
    ("e", "bird", [0.5, 0.5, 0.0]),
]


def add_images(conn, model: str, rows, *, metric: str = "l2", kind: str = "image") -> dict[str, int]:
    """Store ``rows`` = [(name, label, vector, metadata?)] under ``model``; return {name: image_id}."""
    dims = len(rows[0][2])
    model_id = register_model(conn, ModelSpec(model, kind, dims, metric))
    records = [
        ImageRecord(hashlib.sha256(name.encode()).digest(), f"file:///{name}.jpg", label, 32, 32,
                    row[3] if len(row) > 3 else {})
        for row in rows
        for name, label in [row[:2]]
    ]
    copy_image_embeddings(conn, model_id, records, np.array([r[2] for r in rows], dtype=np.float32))
    ids = conn.execute("SELECT uri, image_id FROM pgvision.images").fetchall()
    return {uri.removeprefix("file:///").removesuffix(".jpg"): image_id for uri, image_id in ids}


#: ann (two faces), bob (one) and one face of nobody, 2-d, L2 distances from the query
#: [1, 0.05]: ann1 0.05, ann2 0.112, bob1 1.379, nobody 0.071 (not enrolled: never a match).
TWO_PEOPLE = [
    ("ann1", "ann", [1, 0]), ("ann2", "ann", [0.9, 0.1]), ("bob1", "bob", [0, 1]), ("nobody", None, [0.95, 0]),
]


def add_enrolled_faces(conn, model: str, rows, *, threshold: float = 0.5) -> tuple[dict[str, int], dict[str, int]]:
    """Face model ``model`` (L2, ``threshold``) with one photo and one face per row.

    Args:
        rows: [(key, identity name or None, vector)]; the photo is ``file:///<key>.jpg``, the
            face's box (0, 0, 10, 10); identities are created in order of first appearance.

    Returns:
        ({identity name: identity_id}, {key: face_id}).
    """
    model_id = register_model(conn, ModelSpec(model, "face", len(rows[0][2]), "l2", threshold=threshold))
    people = {}
    for name in dict.fromkeys(who for _, who, _ in rows if who is not None):
        people[name] = conn.execute(
            "INSERT INTO pgvision.identities (name) VALUES (%s) RETURNING identity_id", (name,)
        ).fetchone()[0]
    faces = {}
    for key, who, vec in rows:
        image_id = conn.execute(
            "INSERT INTO pgvision.images (sha256, uri) VALUES (%s, %s) RETURNING image_id",
            (hashlib.sha256(key.encode()).digest(), f"file:///{key}.jpg"),
        ).fetchone()[0]
        faces[key] = conn.execute(
            "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, identity_id) "
            "VALUES (%s, 'test', 0, 0, 10, 10, %s) RETURNING face_id",
            (image_id, people.get(who)),
        ).fetchone()[0]
        copy_vectors(conn, "face_embeddings", "face_id", model_id, np.array([faces[key]]), np.array([vec], np.float32))
    return people, faces


def clustered(n: int, dims: int, clusters: int, seed: int = 0, spread: float = 0.15) -> np.ndarray:
    """``n`` vectors around ``clusters`` random unit centres (Gaussian spread), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + rng.normal(scale=spread, size=(n, dims)) / np.sqrt(dims) * 4
    return x.astype(np.float32)


def families(n_people: int, dims: int, *, family_size: int = 5, seed: int = 0, max_photos: int = 19,
             family_spread: float = 0.6, person_spread: float = 0.25):
    """A gallery with look-alikes: families of ``family_size`` similar people, 1..``max_photos`` photos each.

    Returns (photos (n, dims) float32 unit vectors, person index of each photo, person centres).
    Spreads are L2 norms of the offsets (family centre -> person, person -> photo).
    """
    rng = np.random.default_rng(seed)

    def unit(x):
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    fam = unit(rng.standard_normal((max(1, n_people // family_size), dims)))
    people = unit(fam[np.arange(n_people) // family_size % len(fam)]
                  + family_spread * unit(rng.standard_normal((n_people, dims))))
    counts = rng.integers(1, max_photos + 1, n_people)
    who = np.repeat(np.arange(n_people), counts)
    photos = unit(people[who] + person_spread * unit(rng.standard_normal((len(who), dims))))
    return photos.astype(np.float32), who, people.astype(np.float32)


def add_gallery(conn, model: str, photos: np.ndarray, who: np.ndarray, *, metric: str = "l2",
                threshold: float = 0.6) -> tuple[int, np.ndarray]:
    """Enrol ``photos`` of people ``who`` under face model ``model``; return (model_id, identity_id per person)."""
    from pgvision.ingest.pg_copy import copy_vectors

    model_id = register_model(conn, ModelSpec(model, "face", photos.shape[1], metric, threshold=threshold))
    n_people = int(who.max()) + 1
    ident = np.array([r[0] for r in conn.execute(
        "INSERT INTO pgvision.identities (name) SELECT 'p' || g FROM generate_series(0, %s - 1) g "
        "RETURNING identity_id", (n_people,))], dtype=np.int64)
    face_id = np.array([r[0] for r in conn.execute(
        "WITH i AS (INSERT INTO pgvision.images (sha256, uri) "
        "           SELECT sha256(('photo' || g)::bytea), 'file:///photo' || g || '.jpg' "
        "           FROM generate_series(0, %s - 1) g RETURNING image_id) "
        "INSERT INTO pgvision.faces (image_id, detector, box_left, box_top, box_right, box_bottom, identity_id) "
        "SELECT i.image_id, 'test', 0, 0, 10, 10, (%s::bigint[])[row_number() OVER (ORDER BY i.image_id)] "
        "FROM i ORDER BY i.image_id RETURNING face_id", (len(who), ident[who].tolist()))], dtype=np.int64)
    copy_vectors(conn, "face_embeddings", "face_id", model_id, face_id, photos)
    return model_id, ident


def grant_default(conn, *roles: str) -> None:
    """Grant the ``default`` collection to ``roles`` (e.g. ``pgvision_loader`` before a test's
    ``SET ROLE pgvision_loader``): the privilege roles themselves see no collection's rows."""
    from pgvision.tenancy.collection import grant_collections

    for role in roles:
        grant_collections(conn, role, ["default"])
