"""images.py: finding, hashing and decoding real photos, and every kind of bad file.

The broken and unusual files are made here from real photos (tests/fixtures/photos,
CC0/public domain), so the tests run on a fresh machine.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL", reason="Pillow is not installed: these tests need pip install 'pgvision[images]'")

from PIL import Image

from pgvision.ingest.images import (
    BACKGROUND_RGB,
    IMAGE_EXTENSIONS,
    ImageSkipped,
    decode_image,
    find_images,
    sha256_file,
)

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
CAT = PHOTOS / "chelsea_cat.jpg"


def cat_rgb() -> Image.Image:
    return Image.open(CAT).convert("RGB")


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


def test_find_images_recurses_sorts_and_filters(tmp_path):
    (tmp_path / "b" / "deep").mkdir(parents=True)
    (tmp_path / ".hidden").mkdir()
    names = ["a.JPG", "b/x.png", "b/deep/y.webp", "b/deep/z.TIFF", "c.pgm", "d.bmp", "e.jpeg", "f.tif"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_bytes(b"x")
    (tmp_path / ".hidden" / "h.jpg").write_bytes(b"x")
    (tmp_path / ".dot.jpg").write_bytes(b"x")
    found = find_images([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == sorted(names)
    assert find_images([tmp_path], limit=3) == found[:3]
    # A file named directly is taken whatever its extension; the same file twice counts once.
    assert find_images([tmp_path / "notes.txt", tmp_path / "a.JPG", tmp_path])[:2] == [
        tmp_path / "notes.txt",
        tmp_path / "a.JPG",
    ]
    assert len(find_images([tmp_path, tmp_path])) == len(names)
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".pgm", ".tif", ".tiff"} == IMAGE_EXTENSIONS


def test_find_images_missing_path_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder: .*nowhere"):
        find_images([tmp_path / "nowhere"])


def test_sha256_file_is_the_digest_of_the_bytes():
    assert sha256_file(CAT) == hashlib.sha256(CAT.read_bytes()).digest()
    assert len(sha256_file(CAT)) == 32


def test_plain_jpeg_decodes_to_rgb_with_size():
    d = decode_image(CAT.read_bytes())
    assert d.image.mode == "RGB"
    assert (d.width, d.height) == (320, 213) == d.image.size
    assert d.metadata == {"format": "JPEG", "mode": "RGB"}


@pytest.mark.parametrize("orientation, upright", [(6, Image.Transpose.ROTATE_270), (8, Image.Transpose.ROTATE_90),
                                                 (3, Image.Transpose.ROTATE_180)])
def test_exif_rotated_photo_is_loaded_upright(orientation, upright):
    # A camera stores the sensor's pixels and says in EXIF how to turn them: we store the
    # pixels as they were *before* that turn, tagged, and expect the upright cat back.
    original = cat_rgb()
    stored = original.transpose(_inverse(upright))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    d = decode_image(data)
    assert d.image.size == original.size
    assert (d.width, d.height) == original.size
    assert d.metadata["exif_orientation"] == orientation
    assert mean_abs_diff(d.image, original) < 4


def _inverse(t: Image.Transpose) -> Image.Transpose:
    return {
        Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
        Image.Transpose.ROTATE_180: Image.Transpose.ROTATE_180,
    }[t]


def test_cmyk_jpeg_becomes_the_same_colours_in_rgb():
    original = cat_rgb()
    d = decode_image(encode(original.convert("CMYK"), "JPEG", quality=95))
    assert d.metadata["mode"] == "CMYK"
    assert d.image.mode == "RGB"
    assert mean_abs_diff(d.image, original) < 6


def test_16_bit_grayscale_png_is_scaled_not_clipped_to_white():
    gray8 = np.asarray(cat_rgb().convert("L"), dtype=np.uint16)
    im16 = Image.fromarray((gray8 * 257).astype("<u2"))
    assert im16.mode == "I;16"
    data = encode(im16, "PNG")
    d = decode_image(data)
    assert d.metadata["mode"] in ("I;16", "I")
    out = np.asarray(d.image)
    assert np.array_equal(out[..., 0], out[..., 2])
    assert np.abs(out[..., 0].astype(int) - gray8.astype(int)).max() <= 1
    assert out.mean() < 200  # clipping would make nearly every pixel 255


def test_palette_and_grayscale_become_rgb():
    original = cat_rgb()
    d = decode_image(encode(original.convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG"))
    assert d.metadata["mode"] == "P" and d.image.mode == "RGB"
    assert mean_abs_diff(d.image, original) < 8
    d = decode_image(encode(original.convert("L"), "JPEG"))
    assert d.metadata["mode"] == "L" and d.image.mode == "RGB"
    arr = np.asarray(d.image)
    assert np.array_equal(arr[..., 0], arr[..., 1])


def test_transparent_pixels_are_composited_on_white():
    rgba = cat_rgb().convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:, :100] = 0  # left strip fully transparent
    rgba.putalpha(Image.fromarray(alpha))
    d = decode_image(encode(rgba, "PNG"))
    arr = np.asarray(d.image)
    assert d.metadata["mode"] == "RGBA"
    assert (arr[:, :100] == BACKGROUND_RGB).all()
    assert mean_abs_diff(d.image.crop((100, 0, 320, 213)), cat_rgb().crop((100, 0, 320, 213))) < 1
    # palette image with a transparent index
    p = cat_rgb().convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    index = np.asarray(p)[0, 0]
    d = decode_image(encode(p, "PNG", transparency=int(index)))
    assert tuple(np.asarray(d.image)[0, 0]) == BACKGROUND_RGB


@pytest.mark.parametrize("fmt", ["WEBP", "BMP", "PPM", "TIFF", "PNG"])
def test_other_formats_decode(fmt):
    original = cat_rgb() if fmt != "PPM" else cat_rgb().convert("L")  # PGM: grayscale PPM
    kw = {"lossless": True} if fmt == "WEBP" else {}
    d = decode_image(encode(original, fmt, **kw))
    assert d.image.mode == "RGB" and d.image.size == (320, 213)
    assert mean_abs_diff(d.image, original.convert("RGB")) < 1


def test_zero_byte_file_is_skipped_as_empty():
    with pytest.raises(ImageSkipped) as exc:
        decode_image(b"")
    assert exc.value.reason == "empty"


def test_truncated_jpeg_is_skipped_as_truncated():
    data = CAT.read_bytes()
    with pytest.raises(ImageSkipped) as exc:
        decode_image(data[: len(data) // 2])
    assert exc.value.reason == "truncated"
    assert "truncated" in exc.value.detail


def test_text_with_an_image_extension_is_not_an_image():
    with pytest.raises(ImageSkipped) as exc:
        decode_image(b"this is a README, not a photo\n" * 20)
    assert exc.value.reason == "not-an-image"


def test_corrupt_header_is_skipped_not_raised():
    data = bytearray(encode(cat_rgb(), "PNG"))
    data[16:24] = b"\xff" * 8  # IHDR width/height garbage
    with pytest.raises(ImageSkipped) as exc:
        decode_image(bytes(data))
    assert exc.value.reason in ("unreadable", "decompression-bomb", "truncated", "not-an-image")


def test_decompression_bomb_is_skipped_before_decoding():
    # 10,000 x 10,000 1-bit pixels: a 100-megapixel image in a file of a few KB.
    bomb = encode(Image.new("1", (10_000, 10_000)), "PNG")
    assert len(bomb) < 100_000
    with pytest.raises(ImageSkipped) as exc:
        decode_image(bomb)
    assert exc.value.reason == "decompression-bomb"
    # The limit is a parameter: a real photo over a small limit is refused the same way.
    with pytest.raises(ImageSkipped, match="320x213 px is over the limit of 1000 px"):
        decode_image(CAT.read_bytes(), max_pixels=1000)


def test_draft_decodes_large_jpegs_smaller_but_reports_full_size():
    big = cat_rgb().resize((1280, 852))
    d = decode_image(encode(big, "JPEG", quality=90), draft_size=256)
    assert (d.width, d.height) == (1280, 852)
    assert min(d.image.size) >= 256 and d.image.size[0] < 1280
