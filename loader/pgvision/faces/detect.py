"""Face detection: boxes, 5-point landmarks and detector scores, with dlib.

Two detectors, as in dlib and ``face_recognition``:

- ``hog`` (default): dlib's HOG + linear SVM frontal face detector
  (``dlib.get_frontal_face_detector``). About 7 images/s on 2 CPU cores for 250x250 photos,
  upsampled once (it then finds faces down to about 40 px). Its score is the SVM margin
  (> 0 means a face; higher is surer).
- ``cnn``: dlib's MMOD CNN detector (``mmod_human_face_detector.dat`` from
  ``face-recognition-models``). Finds profile and small faces the HOG misses; several times
  slower on a CPU. Its score is the MMOD confidence.

Landmarks come from dlib's 5-point shape predictor (``shape_predictor_5_face_landmarks.dat``):
two corners of each eye and the bottom of the nose, the points dlib's ``get_face_chip``
aligns on.

The model files ship in PyPI ``face-recognition-models`` (CC0). Its ``__init__`` imports
``pkg_resources`` (gone from new setuptools), so they are located without importing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import dlib

Detector = Literal["hog", "cnn"]
DETECTORS: tuple[str, ...] = ("hog", "cnn")

#: Faces whose box is narrower than this (pixels, in the original image) are not aligned:
#: a 150 px chip made from fewer than 40 px is mostly interpolation. 40 px is also the
#: smallest face dlib's HOG detector (80x80 window) finds after one 2x upsampling.
MIN_FACE_PX = 40


class FaceModelFilesMissing(RuntimeError):
    """face-recognition-models is not installed."""


def model_file(name: str) -> Path:
    """Path of a model file shipped in PyPI ``face-recognition-models``.

    Args:
        name: file name under the package's ``models/`` folder, e.g.
            ``"shape_predictor_5_face_landmarks.dat"``.

    Raises:
        FaceModelFilesMissing: the package (or that file) is absent; the message names the fix.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelFilesMissing(
            "face-recognition-models is not installed; run: pip install 'pgvision[faces]'"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / name
        if path.is_file():
            return path
    raise FaceModelFilesMissing(
        f"{name} is missing from face-recognition-models; reinstall it: "
        "pip install --force-reinstall face-recognition-models==0.3.0"
    )


@dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
        box: (left, top, right, bottom) in pixels of the original image, as dlib gives them
            (right and bottom inclusive); may extend past the image edges.
        landmarks: (5, 2) float32, (x, y) pixels: dlib's 5-point order (right eye outer,
            right eye inner, left eye outer, left eye inner, nose bottom; "right" = the
            subject's right, the image's left).
        score: detector confidence (HOG SVM margin, or MMOD CNN confidence).
        detector: ``"hog"`` or ``"cnn"``.
        shape: the dlib landmark object, which :mod:`pgvision.faces.align` needs.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float
    detector: str
    shape: "dlib.full_object_detection" = field(repr=False, compare=False)

    @property
    def size(self) -> int:
        """Width of the box in pixels."""
        return self.box[2] - self.box[0] + 1


@dataclass(frozen=True)
class Detections:
    """What detection found in one photo: faces to embed, and faces too small to align."""

    faces: list[Face]
    too_small: list[Face]


class FaceDetector:
    """dlib's face detector plus the 5-point landmark predictor.

    Args:
        detector: ``"hog"`` (default) or ``"cnn"``.
        upsample: times the image is upsampled 2x before detection (dlib's
            ``number_of_times_to_upsample``; ``face_recognition`` uses 1). Each doubles the
            time and halves the smallest face found.
        min_face_px: faces with a box narrower than this are returned in ``too_small``,
            not aligned (default :data:`MIN_FACE_PX`).

    Raises:
        ValueError: unknown detector, or upsample outside 0..3.
        FaceModelFilesMissing: the model files are not installed.
    """

    def __init__(self, detector: str = "hog", upsample: int = 1, min_face_px: int = MIN_FACE_PX):
        import dlib

        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        if not 0 <= upsample <= 3:
            raise ValueError(f"upsample must be between 0 and 3, got {upsample}")
        self.detector = detector
        self.upsample = upsample
        self.min_face_px = min_face_px
        if detector == "hog":
            self._detect = dlib.get_frontal_face_detector()
        else:
            self._detect = dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
        self._predict = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))

    def _boxes(self, pixels: np.ndarray) -> list[tuple["dlib.rectangle", float]]:
        if self.detector == "hog":
            rects, scores, _ = self._detect.run(pixels, self.upsample, 0.0)
            return list(zip(rects, scores))
        return [(d.rect, float(d.confidence)) for d in self._detect(pixels, self.upsample)]

    def detect(self, pixels: np.ndarray) -> Detections:
        """Find the faces of one photo, largest first.

        Args:
            pixels: (H, W, 3) uint8 RGB (see :func:`pgvision.faces.load.read_photo`).

        Returns:
            :class:`Detections`; empty lists when there is no face.

        Raises:
            ValueError: pixels is not (H, W, 3) uint8.
        """
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"pixels must be (H, W, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
        faces, too_small = [], []
        for rect, score in self._boxes(pixels):
            shape = self._predict(pixels, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            face = Face(
                box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
                landmarks=points,
                score=float(score),
                detector=self.detector,
                shape=shape,
            )
            (faces if face.size >= self.min_face_px else too_small).append(face)
        faces.sort(key=lambda f: -f.size)
        return Detections(faces, too_small)
