"""Image files: find them, key them by content, decode them upright as RGB.

The first stage of the loader's data flow (``image files -> decode -> tensors``). Nothing
here knows about models or the database.

* :func:`find_images` walks folders for the extensions in :data:`IMAGE_EXTENSIONS`.
* :func:`sha256_file` / :func:`sha256_bytes` give the 32-byte content key of an image
  (``pgvision.images.sha256``): the same bytes under two names are one image.
* :func:`decode_image` turns the bytes into an upright 8-bit RGB ``PIL.Image`` or raises
  :class:`ImageSkipped` with a short reason (``empty``, ``not-an-image``, ``truncated``,
  ``decompression-bomb``, ``unreadable``) that the loader counts and reports: bad images
  are data, not crashes.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: File name extensions the loader reads (lower case; matched case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".tif", ".tiff"}
)

#: Largest image (in pixels, width x height) decoded; larger ones are skipped as
#: ``decompression-bomb``. Pillow's own default (``Image.MAX_IMAGE_PIXELS``, 89,478,485 px:
#: a 24-bit 256 MiB bitmap) only *warns* below twice that; we refuse at the limit itself.
MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485

#: Colour that transparent pixels are composited onto (alpha, LA, palette transparency).
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)

#: Skip reasons, in the order the summary prints them.
SKIP_REASONS: tuple[str, ...] = (
    "empty",
    "not-an-image",
    "truncated",
    "decompression-bomb",
    "unreadable",
)

# EXIF Orientation values that swap width and height (TIFF 6.0 / EXIF 2.3 tag 0x0112).
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


class ImageSkipped(Exception):
    """An image file that cannot be used; ``reason`` is one of :data:`SKIP_REASONS`.

    Attributes:
        reason: short machine-readable reason (``truncated``, ...).
        detail: the decoder's own message, for the per-file report.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded upright to 8-bit RGB.

    Attributes:
        image: ``PIL.Image`` in mode ``RGB``, EXIF orientation applied. When ``draft_size``
            was given to :func:`decode_image` this may be a JPEG DCT-scaled version (each
            side still >= the requested size), not the full resolution.
        width: width in pixels of the full-resolution upright image.
        height: height in pixels of the full-resolution upright image.
        metadata: ``format`` (Pillow's name, e.g. ``JPEG``), ``mode`` (the file's colour
            mode before conversion, e.g. ``CMYK``, ``I;16``, ``P``), ``exif_orientation``
            (1-8) when the file carries one.
    """

    image: Image.Image
    width: int
    height: int
    metadata: dict = field(default_factory=dict)


def find_images(paths: Iterable[str | os.PathLike], limit: int | None = None) -> list[Path]:
    """Image files under ``paths``, recursively, sorted, without duplicates.

    Args:
        paths: files and folders. A file is taken whatever its extension (the user named
            it); folders are walked for :data:`IMAGE_EXTENSIONS`, hidden entries
            (names starting with ``.``) skipped, symbolic links to files followed.
        limit: keep only the first ``limit`` files of the sorted list (``None``: all).

    Returns:
        Absolute paths, sorted by their string form within each argument, in argument order.

    Raises:
        FileNotFoundError: a path does not exist (message names it).
    """
    found: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"no such file or folder: {raw}")
        if root.is_file():
            candidates = [root]
        else:
            candidates = []
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for name in filenames:
                    if name.startswith("."):
                        continue
                    if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                        candidates.append(Path(dirpath, name))
            candidates.sort(key=lambda p: str(p))
        for path in candidates:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            found.append(resolved)
            if limit is not None and len(found) >= limit:
                return found
    return found


def sha256_bytes(data: bytes) -> bytes:
    """SHA-256 digest (32 bytes) of ``data``."""
    return hashlib.sha256(data).digest()


def sha256_file(path: str | os.PathLike) -> bytes:
    """SHA-256 digest (32 bytes) of a file's bytes, read in chunks (``hashlib.file_digest``).

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").digest()


def decode_image(data: bytes, draft_size: int | None = None, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode image bytes to an upright 8-bit RGB image.

    Conversions: EXIF orientation applied (``ImageOps.exif_transpose``); CMYK (incl.
    Adobe-inverted JPEG, handled by Pillow), YCbCr, LAB, grayscale ``L``/``1`` and palette
    ``P`` converted to RGB; transparency (``RGBA``, ``LA``, ``PA``, palette with a
    transparent index) composited onto :data:`BACKGROUND_RGB`; 16-bit grayscale
    (``I;16*``, ``I``) scaled by 255/65535 (not clipped, which would turn most pixels white);
    float ``F`` scaled from [0, 1] when its maximum is <= 1, else clipped to [0, 255].
    Multi-frame files (GIF, TIFF) give their first frame.

    Args:
        data: the file's bytes.
        draft_size: if given, JPEGs are decoded with DCT scaling (``Image.draft``) to the
            smallest size whose shorter side is still >= ``draft_size`` px: 2-4x faster
            for photos much larger than the model's input. Width/height are still reported
            at full resolution.
        max_pixels: refuse images with more pixels than this (decompression bombs).

    Returns:
        :class:`DecodedImage`.

    Raises:
        ImageSkipped: ``empty`` (zero bytes), ``not-an-image`` (no decoder recognises it),
            ``truncated`` (data ends early), ``decompression-bomb`` (over ``max_pixels``),
            ``unreadable`` (any other decoder error).
    """
    if not data:
        raise ImageSkipped("empty", "zero-byte file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            width, height = im.size
            if width * height > max_pixels:
                raise ImageSkipped(
                    "decompression-bomb", f"{width}x{height} px is over the limit of {max_pixels} px"
                )
            file_mode, file_format = im.mode, im.format
            orientation = im.getexif().get(_EXIF_ORIENTATION)
            if draft_size and file_format == "JPEG":
                im.draft("RGB", (draft_size, draft_size))
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except ImageSkipped:
        raise
    except UnidentifiedImageError as exc:
        raise ImageSkipped("not-an-image", str(exc)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageSkipped("decompression-bomb", str(exc)) from None
    except OSError as exc:
        msg = str(exc)
        reason = "truncated" if "truncated" in msg or "broken data stream" in msg else "unreadable"
        raise ImageSkipped(reason, msg) from None
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError) as exc:
        # Pillow's plugins raise these on corrupt headers (e.g. SyntaxError for a bad PGM).
        raise ImageSkipped("unreadable", f"{type(exc).__name__}: {exc}") from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    metadata: dict = {"format": file_format, "mode": file_mode}
    if orientation:
        metadata["exif_orientation"] = int(orientation)
    return DecodedImage(image=rgb, width=width, height=height, metadata=metadata)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see :func:`decode_image` for the rules)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        # "I" from a 16-bit PNG/PGM/TIFF holds 0..65535; a genuinely 8-bit range stays as is.
        scale = 255.0 / 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 1.0
        gray = np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        gray = np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P" and "transparency" in im.info or mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")
