"""Image files: find them, key them by content, decode them upright as RGB.

The first stage of the loader's data flow (``image files -> decode -> tensors``). Nothing
here knows about models or the database.

* :func:`find_images` walks folders for the extensions in :data:`IMAGE_EXTENSIONS`
  (:func:`pgvision.ingest.files.find_files`: regular files only; links that loop or lead nowhere,
  FIFOs and devices are skipped with a reason).
* :func:`sha256_file` / :func:`sha256_bytes` (from :mod:`pgvision.ingest.files`) give the 32-byte
  content key of an image (``pgvision.images.sha256``): the same bytes under two names are
  one image.
* :func:`decode_image` turns the bytes into an upright 8-bit RGB ``PIL.Image`` or raises
  :class:`ImageSkipped` with a short reason (``empty``, ``not-an-image``, ``truncated``,
  ``decompression-bomb``, ``unreadable``) that the loader counts and reports: bad images
  are data, not crashes. Width x height and the aspect ratio are checked from the header
  before decoding.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pgvision.ingest.files import (
    SKIP_REASONS,
    FileSkipped,
    OnSkip,
    find_files,
    sha256_bytes,
    sha256_file,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "DECODED_FORMATS",
    "MAX_PIXELS",
    "MAX_ASPECT_RATIO",
    "SKIP_REASONS",
    "ImageSkipped",
    "DecodedImage",
    "find_images",
    "sha256_bytes",
    "sha256_file",
    "decode_image",
    "ImageHeader",
    "read_header",
]

#: File name extensions the loader reads (lower case; matched case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".tif", ".tiff"}
)

#: Largest image (in pixels, width x height) decoded; larger ones are skipped as
#: ``decompression-bomb``. Pillow's own default (``Image.MAX_IMAGE_PIXELS``, 89,478,485 px:
#: a 24-bit 256 MiB bitmap) only *warns* below twice that; we refuse at the limit itself.
MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485

#: Pillow decoders tried, whatever the file's name says: the formats of
#: :data:`IMAGE_EXTENSIONS` (JPEG includes multi-picture MPO; DIB: headerless BMP; PPM: also PGM)
#: and GIF. Never the others Pillow has: some run external programs (EPS and PDF-like files
#: call Ghostscript) or parse rarely exercised containers; a file in such a format is
#: ``not-an-image`` here.
DECODED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "DIB", "PPM", "TIFF", "GIF")

#: Largest ratio of the longer side to the shorter one decoded; more elongated images are
#: skipped as ``decompression-bomb``. Few pixels can still cost gigabytes: the preprocessing
#: resizes the *shorter* side to the model's input (e.g. 256 px), so a 16000x1 PNG (129
#: bytes) would become a 4,096,000x256 image. At 100:1 (a wide panorama is ~10:1) the
#: resized image stays under 256 x 25,600 px.
MAX_ASPECT_RATIO: int = 100

#: Colour that transparent pixels are composited onto (alpha, LA, palette transparency).
BACKGROUND_RGB: tuple[int, int, int] = (255, 255, 255)



# EXIF Orientation values that swap width and height (TIFF 6.0 / EXIF 2.3 tag 0x0112).
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_EXIF_ORIENTATION = 0x0112


#: An image file that cannot be used; ``reason`` is one of :data:`SKIP_REASONS`
#: (``reason``, ``detail``, ``path`` attributes). The same class as
#: :class:`pgvision.ingest.files.FileSkipped`, so one ``except`` covers file and decoder reasons.
ImageSkipped = FileSkipped


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


def find_images(
    paths: Iterable[str | os.PathLike],
    limit: int | None = None,
    on_skip: OnSkip | None = None,
) -> list[Path]:
    """Regular image files under ``paths``: :func:`pgvision.ingest.files.find_files` for
    :data:`IMAGE_EXTENSIONS`.

    Args:
        paths: files and folders. A file is taken whatever its extension (the user named
            it); folders are walked for :data:`IMAGE_EXTENSIONS`, hidden entries
            (names starting with ``.``) skipped, symbolic links to files followed.
        limit: keep only the first ``limit`` files of the sorted list (``None``: all).
        on_skip: called with ``(path, reason, detail)`` for each symbolic link loop,
            broken link, FIFO/device/socket, or file over the size limit met (never raised).

    Returns:
        Absolute paths, sorted by their string form within each argument, in argument order.

    Raises:
        FileNotFoundError: a path does not exist (message names it).
    """
    return find_files(paths, IMAGE_EXTENSIONS, limit=limit, on_skip=on_skip)


def decode_image(
    data: bytes,
    draft_size: int | None = None,
    max_pixels: int = MAX_PIXELS,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> DecodedImage:
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
        max_aspect_ratio: refuse images whose longer side is more than this many times
            the shorter one (a few pixels that resize to gigabytes). Both limits are checked
            on the header's width and height, before any pixel is decoded.

    Returns:
        :class:`DecodedImage`.

    Raises:
        ImageSkipped: ``empty`` (zero bytes), ``not-an-image`` (none of
            :data:`DECODED_FORMATS` recognises it),
            ``truncated`` (data ends early), ``decompression-bomb`` (over ``max_pixels`` or
            ``max_aspect_ratio``),
            ``unreadable`` (any other decoder error).
    """
    if not data:
        raise ImageSkipped("empty", "zero-byte file")
    try:
        with _opened(data, max_pixels, max_aspect_ratio) as im:
            width, height = im.size
            file_mode, file_format = im.mode, im.format
            orientation = im.getexif().get(_EXIF_ORIENTATION)
            if draft_size and file_format == "JPEG":
                im.draft("RGB", (draft_size, draft_size))
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = _to_rgb(im)
    except ImageSkipped:
        raise
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


def _check_limits(width: int, height: int, max_pixels: int, max_aspect_ratio: float) -> None:
    """Raise ``decompression-bomb`` for a header over the pixel or aspect-ratio limit."""
    if width * height > max_pixels:
        raise ImageSkipped("decompression-bomb", f"{width}x{height} px is over the limit of {max_pixels} px")
    if min(width, height) < 1 or max(width, height) > max_aspect_ratio * min(width, height):
        raise ImageSkipped(
            "decompression-bomb",
            f"{width}x{height} px is more elongated than the limit of {max_aspect_ratio:g}:1",
        )


@dataclass(frozen=True)
class ImageHeader:
    """What an image file's header says, read without decoding any pixel (:func:`read_header`).

    Attributes:
        width, height: the upright size in pixels (EXIF orientations 5-8 swap them), as
            :class:`DecodedImage` reports it.
        orientation: EXIF Orientation (1-8), or None when the file has none.
        progressive: a progressive (or multi-scan) JPEG.
        metadata: the same dict :func:`decode_image` would give (``format``, ``mode``,
            ``exif_orientation``).
    """

    width: int
    height: int
    orientation: int | None
    progressive: bool
    metadata: dict = field(default_factory=dict)


def read_header(
    data: bytes,
    max_pixels: int = MAX_PIXELS,
    max_aspect_ratio: float = MAX_ASPECT_RATIO,
) -> ImageHeader:
    """Parse an image's header (Pillow's lazy ``Image.open``; no pixel is decoded) and check
    the same pixel-count and aspect-ratio limits as :func:`decode_image`.

    Used by decoders other than Pillow (:mod:`pgvision.ingest.decode_gpu`) so that a file reaches
    them only after the checks every file gets.

    Raises:
        ImageSkipped: the same reasons as :func:`decode_image` for what the header shows
            (``empty``, ``not-an-image``, ``decompression-bomb``, ``unreadable``,
            ``truncated``). Callers that need :func:`decode_image`'s exact reason for a
            bad file decode it with :func:`decode_image`.
    """
    if not data:
        raise ImageSkipped("empty", "zero-byte file")
    try:
        with _opened(data, max_pixels, max_aspect_ratio) as im:
            width, height = im.size
            orientation = im.getexif().get(_EXIF_ORIENTATION)
            progressive = bool(im.info.get("progressive") or im.info.get("progression"))
            metadata: dict = {"format": im.format, "mode": im.mode}
    except ImageSkipped:
        raise
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError) as exc:
        raise ImageSkipped("unreadable", f"{type(exc).__name__}: {exc}") from None
    if orientation in _TRANSPOSING_ORIENTATIONS:
        width, height = height, width
    if orientation:
        metadata["exif_orientation"] = int(orientation)
    return ImageHeader(width, height, int(orientation) if orientation else None, progressive, metadata)


@contextlib.contextmanager
def _opened(data: bytes, max_pixels: int, max_aspect_ratio: float) -> Iterator[Image.Image]:
    """Pillow's (lazy) image of ``data`` once its size passed :func:`_check_limits`.

    Pillow's refusals, while opening or in the ``with`` body, become :class:`ImageSkipped`:
    ``not-an-image`` (no decoder) and ``decompression-bomb`` (its warning raised as an
    error); other exceptions pass through, for the caller to name.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=DECODED_FORMATS)
            _check_limits(*im.size, max_pixels, max_aspect_ratio)
            yield im
    except UnidentifiedImageError:
        # Pillow's message names its buffer ("<_io.BytesIO object at 0x...>"); callers name the file.
        raise ImageSkipped("not-an-image", "no image decoder recognises these bytes") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageSkipped("decompression-bomb", str(exc)) from None


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
