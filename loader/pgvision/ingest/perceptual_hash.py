"""Perceptual hashes of a decoded image: the whole picture and nine 90 % crops.

Computed in the loader's decode stage from the ``PIL.Image`` already decoded
(:class:`pgvision.ingest.decoding.ImageFileDataset`), never from a second decode, and stored
in ``pgvision.images.phash`` (``bit(64)``) and ``pgvision.images.phash_crops`` (``bit(576)``).

The hash is imagehash's pHash (``imagehash.phash``, hash_size 8: the sign of the 8x8
lowest-frequency DCT coefficients of a 32x32 grayscale version against their median;
Zauner, "Implementation and Benchmarking of Perceptual Image Hash Functions", 2010).
pHash survives re-encoding, resizing and small brightness or contrast changes (a few bits
of 64 change) but not cropping: cutting 10 % off one side moves every DCT coefficient.
So each image also carries the pHash of nine crops that keep 90 % of its width and height,
at offsets 0, 5 and 10 % in x and y (a 3x3 grid). A copy cropped by up to 10 % in each
direction is within 2.5 % of one of the original's crops, and the SQL function
``pgvision._hash_distance`` takes the smallest Hamming distance between the whole of one
image and the crops of the other (and whole to whole).

Cost: the image is first reduced to :data:`WORK_SIZE` px square grayscale (one resize of
the decoded pixels), then the ten pHashes come from crops of that. Measured here on a
500x375 JPEG (one process, a busy 2-core box): about as long as decoding the file, 2-3x one
full-size ``imagehash.phash``, and small beside the model (efficientnet-lite0 on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

__all__ = ["CROP_FRACTION", "CROP_OFFSETS", "HASH_BITS", "WORK_SIZE", "PerceptualHash", "perceptual_hash"]

#: Bits of one pHash (imagehash's hash_size 8: 8 x 8).
HASH_BITS: int = 64
#: Side of each crop as a fraction of the image's width and height.
CROP_FRACTION: float = 0.9
#: Offsets of the crops' left (top) edge as fractions of the width (height): 3 x 3 crops.
CROP_OFFSETS: tuple[float, ...] = (0.0, 0.05, 0.1)
#: Side in pixels of the grayscale square every hash is taken from (crops of it are 115 px,
#: well above pHash's own 32 px reduction).
WORK_SIZE: int = 128


@dataclass(frozen=True)
class PerceptualHash:
    """The hashes of one image as PostgreSQL ``bit`` literals (``'0'``/``'1'`` strings).

    Attributes:
        phash: 64 characters: pHash of the whole image (``images.phash``).
        crops: 576 characters: the nine crops' pHashes, row by row (y offset, then x
            offset, each in :data:`CROP_OFFSETS` order), 64 bits each (``images.phash_crops``).
    """

    phash: str
    crops: str


def _bits(image: Image.Image) -> str:
    import imagehash

    return "".join("1" if b else "0" for b in imagehash.phash(image, hash_size=8).hash.flatten())


def perceptual_hash(image: Image.Image) -> PerceptualHash:
    """pHash of ``image`` and of its nine 90 % crops.

    Args:
        image: a decoded ``PIL.Image`` (any mode; the loader's is upright 8-bit RGB, possibly
            a JPEG draft-scaled version: the hashes only see a 128 px reduction of it).

    Returns:
        :class:`PerceptualHash`.
    """
    # Reduce first, then go gray: converting the full-resolution image cost 10x more.
    work = image.resize((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX, reducing_gap=2.0).convert("L")
    side = round(WORK_SIZE * CROP_FRACTION)
    crops = []
    for oy in CROP_OFFSETS:
        for ox in CROP_OFFSETS:
            left, top = round(WORK_SIZE * ox), round(WORK_SIZE * oy)
            crops.append(_bits(work.crop((left, top, left + side, top + side))))
    return PerceptualHash(_bits(work), "".join(crops))
