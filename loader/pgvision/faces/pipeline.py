"""One photo through the face stages: decode (:func:`read_photo`), detect, align and embed
(:class:`FacePipeline`). Nothing is stored here; :mod:`pgvision.load_faces` stores.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgvision.faces.align import align_faces
from pgvision.faces.detect import Face, FaceDetector
from pgvision.faces.embed import FaceModel
from pgvision.ingest.files import file_uri, read_file
from pgvision.ingest.images import ImageSkipped, decode_image, sha256_bytes
from pgvision.ingest.pg_copy import ImageRecord


@dataclass
class Photo:
    """A decoded photo: (H, W, 3) uint8 RGB pixels, its sha256 (32 bytes) and uri."""

    pixels: np.ndarray
    sha256: bytes
    uri: str
    metadata: dict = field(default_factory=dict)

    @property
    def record(self) -> ImageRecord:
        return ImageRecord(sha256=self.sha256, uri=self.uri, width=int(self.pixels.shape[1]),
                           height=int(self.pixels.shape[0]), metadata=self.metadata)


def read_photo(path: str | Path) -> Photo:
    """Read and decode one photo upright as RGB (grayscale, CMYK, palette: converted).

    Only a regular file is read, up to the size limit (:func:`pgvision.ingest.files.read_file`);
    its uri is the lossless :func:`pgvision.ingest.files.file_uri` (any bytes in the name).

    Raises:
        pgvision.images.ImageSkipped: not a usable file or image (``reason`` says why; the
            message names the file).
    """
    try:
        data = read_file(path)
        decoded = decode_image(data)
    except ImageSkipped as exc:
        raise exc.with_path(path) from None
    pixels = np.ascontiguousarray(np.asarray(decoded.image, dtype=np.uint8))
    return Photo(pixels, sha256_bytes(data), file_uri(Path(path).resolve()), decoded.metadata)


class FacePipeline:
    """Detector + face model: photo -> faces and embeddings (nothing stored)."""

    def __init__(self, model: FaceModel, detector: FaceDetector):
        self.model = model
        self.detector = detector

    def scan(self, pixels: np.ndarray, seconds: Counter | None = None) -> tuple[list[Face], np.ndarray, int]:
        """Faces of one photo, their aligned chips and the count of too-small faces.

        Returns:
            (faces largest first, chips (N, S, S, 3) uint8, too_small count).
        """
        seconds = seconds if seconds is not None else Counter()
        t = time.perf_counter()
        found = self.detector.detect(pixels)
        seconds["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        chips = align_faces(pixels, found.faces, self.model.chip_size, self.model.chip_padding)
        seconds["align"] += time.perf_counter() - t
        return found.faces, chips, len(found.too_small)

    def embed_photo(self, pixels: np.ndarray) -> tuple[list[Face], np.ndarray]:
        """Faces of one photo, largest first, and their (N, D) float32 embeddings."""
        faces, chips, _ = self.scan(pixels)
        return faces, self.model.embed(chips)
