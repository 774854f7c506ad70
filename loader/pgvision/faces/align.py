"""Face alignment: a square chip per face, aligned on dlib's 5 landmarks.

dlib's ``get_face_chips`` fits a similarity transform (rotation, scale, shift) from the
5 landmarks to a mean-face template and resamples a ``size`` x ``size`` chip; ``padding``
adds that fraction of the face width on every side (dlib: 0.25 for its ResNet descriptor,
``dnn_face_recognition_ex.cpp``). Each face model in :mod:`pgvision.faces.embed` says which
size and padding it was trained for.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from pgvision.errors import InvalidValue
from pgvision.faces.detect import Face


def align_faces(pixels: np.ndarray, faces: Sequence[Face], size: int, padding: float) -> np.ndarray:
    """Cut one aligned chip per face.

    Args:
        pixels: (H, W, 3) uint8 RGB, the photo the faces were detected in.
        faces: faces from :meth:`pgvision.faces.detect.FaceDetector.detect`.
        size: chip side in pixels (150 for dlib's ResNet, 160 for FaceNet).
        padding: border around the face template, as a fraction of its width (>= 0).

    Returns:
        (N, size, size, 3) uint8 RGB; N = len(faces), (0, size, size, 3) for no face.

    Raises:
        ValueError: size < 32 or padding < 0.
    """
    import dlib

    if size < 32:
        raise InvalidValue(f"chip size must be at least 32 px, got {size}")
    if padding < 0:
        raise InvalidValue(f"padding must be >= 0, got {padding}")
    if not faces:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    shapes = dlib.full_object_detections()
    for face in faces:
        shapes.append(face.shape)
    chips = dlib.get_face_chips(pixels, shapes, size=size, padding=padding)
    return np.stack([np.asarray(c, dtype=np.uint8) for c in chips])
