"""Small helpers for the SQL tests: register a model and store hand-made vectors."""

from __future__ import annotations

import hashlib

import numpy as np

from pgvision.pg_copy import ImageRecord, copy_image_embeddings
from pgvision.registry import ModelSpec, register_model


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


def clustered(n: int, dims: int, clusters: int, seed: int = 0, spread: float = 0.15) -> np.ndarray:
    """``n`` vectors around ``clusters`` random unit centres (Gaussian spread), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dims))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = centres[rng.integers(0, clusters, n)] + rng.normal(scale=spread, size=(n, dims)) / np.sqrt(dims) * 4
    return x.astype(np.float32)
