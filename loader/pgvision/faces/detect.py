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

Pre-cropped faces (``crop``): photos that are already one face (ID and badge photos, crops
exported by other tools, AT&T-style 92x112 crops) often defeat the detectors, whose windows
need some background around the face. With ``crop="whole"`` the face box is the whole image
(a dlib rectangle of the image), the 5 landmarks are found inside it and the face is aligned
as usual; such faces are stored under the detector name ``whole`` (so ``faces load`` stays
idempotent per mode). In the default ``crop="detect"``, a photo in which the detector finds
nothing, or only faces too small to align that fill most of it (:data:`CROP_FACE_SHARE`),
but that looks like a crop (:func:`looks_like_crop`) gets the whole-image face too,
stored under the detector's own name with ``detector_score`` NULL (no detector vouched for it).

The model files ship in PyPI ``face-recognition-models`` (CC0). Its ``__init__`` imports
``pkg_resources`` (gone from new setuptools), so they are located without importing it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from pgvision.errors import InvalidValue, PgvisionError

if TYPE_CHECKING:  # pragma: no cover
    import dlib

Detector = Literal["hog", "cnn"]
DETECTORS: tuple[str, ...] = ("hog", "cnn")
CROPS: tuple[str, ...] = ("detect", "whole")
#: Detector name of faces whose box is the whole image (``crop="whole"``).
WHOLE = "whole"

#: An image is "crop-like" when both sides are at most this many pixels and its aspect
#: (height / width) is within :data:`CROP_ASPECT`. Exported face crops are small and about
#: face-shaped: AT&T 92x112, ArcFace 112x112, FaceNet 160x160, VGGFace2 224x224; a photo
#: with a scene around the face is larger or wider. Chosen from those formats, not tuned on
#: any test set. (LFW's 250x250 photos are crop-sized too although their face is the middle
#: ~100 px: a LFW photo in which HOG finds nothing gets a whole-image face; see docs/faces.md.)
CROP_MAX_PX = 300
CROP_ASPECT = (0.6, 1.6)


#: In a crop-like photo, a detected face too small to align is taken for the crop's own face
#: (the whole image is used instead) when its box is at least this share of the image width;
#: a smaller one is a small face in a small photo, reported as too small.
CROP_FACE_SHARE = 0.5


def looks_like_crop(height: int, width: int) -> bool:
    """True when an image of this size (pixels) is probably one pre-cropped face (see :data:`CROP_MAX_PX`)."""
    return max(height, width) <= CROP_MAX_PX and CROP_ASPECT[0] <= height / max(width, 1) <= CROP_ASPECT[1]

#: Faces whose box is narrower than this (pixels, in the original image) are not aligned:
#: a 150 px chip made from fewer than 40 px is mostly interpolation. 40 px is also the
#: smallest face dlib's HOG detector (80x80 window) finds after one 2x upsampling.
MIN_FACE_PX = 40


class FaceModelFilesMissing(PgvisionError, RuntimeError):
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
        score: detector confidence (HOG SVM margin, or MMOD CNN confidence); None for a
            whole-image face.
        detector: ``"hog"``, ``"cnn"`` or ``"whole"`` (the box is the whole image).
        shape: the dlib landmark object, which :mod:`pgvision.faces.align` needs.
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray
    score: float | None
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
        crop: ``"detect"`` (default: run the detector; a crop-like image where it finds
            nothing gets a whole-image face) or ``"whole"`` (every image is one face, the
            detector is not run; ``self.detector`` is then ``"whole"``).

    Attributes:
        detector: the name faces and scans are stored under: ``hog``, ``cnn`` or ``whole``.

    Raises:
        ValueError: unknown detector or crop mode, or upsample outside 0..3.
        FaceModelFilesMissing: the model files are not installed.
    """

    def __init__(self, detector: str = "hog", upsample: int = 1, min_face_px: int = MIN_FACE_PX,
                 crop: str = "detect"):
        import dlib

        if detector not in DETECTORS:
            raise InvalidValue(f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
        if crop not in CROPS:
            raise InvalidValue(f"crop must be one of {', '.join(CROPS)}, got {crop!r}")
        if not 0 <= upsample <= 3:
            raise InvalidValue(f"upsample must be between 0 and 3, got {upsample}")
        self.crop = crop
        self.detector = WHOLE if crop == "whole" else detector
        self.upsample = upsample
        self.min_face_px = min_face_px
        self._rectangle = dlib.rectangle
        if crop == "whole":
            self._detect = None
        elif detector == "hog":
            self._detect = dlib.get_frontal_face_detector()
        else:
            self._detect = dlib.cnn_face_detection_model_v1(str(model_file("mmod_human_face_detector.dat")))
        self._predict = dlib.shape_predictor(str(model_file("shape_predictor_5_face_landmarks.dat")))

    def _boxes(self, pixels: np.ndarray) -> list[tuple["dlib.rectangle", float]]:
        if self.detector == "hog":
            rects, scores, _ = self._detect.run(pixels, self.upsample, 0.0)
            return list(zip(rects, scores, strict=True))
        return [(d.rect, float(d.confidence)) for d in self._detect(pixels, self.upsample)]

    def detect(self, pixels: np.ndarray) -> Detections:
        """Find the faces of one photo, largest first.

        Args:
            pixels: (H, W, 3) uint8 RGB (see :func:`pgvision.load_faces.read_photo`).

        Returns:
            :class:`Detections`; empty lists when there is no face.

        Raises:
            ValueError: pixels is not (H, W, 3) uint8.
        """
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise InvalidValue(f"pixels must be (H, W, 3) uint8 RGB, got {pixels.shape} {pixels.dtype}")
        whole_box = [(self._rectangle(0, 0, pixels.shape[1] - 1, pixels.shape[0] - 1), None)]
        if self.crop == "whole":
            faces, too_small = self._faces(pixels, whole_box, whole=True)
        else:
            faces, too_small = self._faces(pixels, self._boxes(pixels), whole=False)
            fills = all(f.size >= CROP_FACE_SHARE * pixels.shape[1] for f in too_small)
            if not faces and fills and looks_like_crop(*pixels.shape[:2]):
                # nothing usable found in a crop-like photo: no face, or only faces too small to
                # align that fill most of its width (a tight crop): the face is the whole image
                whole_faces, whole_small = self._faces(pixels, whole_box, whole=True)
                if whole_faces:
                    faces, too_small = whole_faces, []
                elif not too_small:
                    too_small = whole_small
        faces.sort(key=lambda f: -f.size)
        return Detections(faces, too_small)

    def _faces(self, pixels: np.ndarray, boxes, *, whole: bool) -> tuple[list[Face], list[Face]]:
        """(faces at least ``min_face_px`` wide, faces too small to align) for detector boxes."""
        faces, too_small = [], []
        for rect, score in boxes:
            shape = self._predict(pixels, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            face = Face(
                box=(rect.left(), rect.top(), rect.right(), rect.bottom()),
                landmarks=points,
                score=None if score is None else float(score),
                detector=WHOLE if whole else self.detector,
                shape=shape,
            )
            (faces if face.size >= self.min_face_px else too_small).append(face)
        return faces, too_small
