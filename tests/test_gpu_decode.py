"""The device decoder (issue 11), run on the CPU: the same functions the loader runs on CUDA.

``pgvision.ingest.decode_gpu`` takes a torch device; here it is ``cpu`` (torchvision's
``decode_jpeg`` is then libjpeg-turbo instead of nvJPEG; resize and normalisation are the
same torch code on either device). What is checked:

* embeddings of images decoded and resized by the tensor path agree with the Pillow path's
  to a cosine similarity > 0.99 per image. Not equal: torch's antialiased bicubic resize is
  not Pillow's bit for bit (measured: input tensors within ~0.05 of each other on the
  normalised scale, mean 0.001; cosines 0.9995 and above);
* EXIF orientations 1-8 give Pillow's ``exif_transpose`` pixels exactly;
* only baseline RGB/grayscale JPEGs that end with EOI and pass the header limits go to the
  device; progressive, CMYK, cut-short, over-limit and non-JPEG files stay on the CPU;
* a JPEG the device decoder refuses is decoded again by Pillow and keeps today's skip
  reason; a load through the device path on a real PostgreSQL gives the same rows, skips
  and (within the tolerance) vectors as the CPU path;
* ``--decode gpu`` on this machine (no CUDA) is one line with the fix.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pgvision.ingest.decode_gpu import (
    DecodeUnavailable,
    TensorDecoder,
    choose_decoder,
    decode_batch,
    deferrable,
    orient,
    resize_normalize,
)
from pgvision.ingest.images import decode_image
from pgvision.load_images import load_images
from pgvision.models import load_image_model
from pgvision.server.connection import connect
from PIL import Image, ImageOps
from test_loader import write_bad_and_odd_files

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
CPU = torch.device("cpu")

#: Per-image cosine similarity floor between the tensor path's and the Pillow path's
#: embeddings (measured 0.9995+ on these photos; resize kernels differ, see module doc).
COSINE_FLOOR = 0.99


@pytest.fixture(scope="module")
def lite0():
    return load_image_model("efficientnet-lite0", device="cpu")


def jpeg(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", **kw)
    return buf.getvalue()


def cat() -> Image.Image:
    return Image.open(PHOTOS / "chelsea_cat.jpg").convert("RGB")


def broken_scan_header(data: bytes) -> bytes:
    """A JPEG whose frame header is fine but whose scan header is not (Pillow: ``truncated``)."""
    bad = bytearray(data)
    bad[data.index(b"\xff\xda") + 4] = 9  # components in scan: 9 (a JPEG has at most 4)
    return bytes(bad)


def test_tensor_path_embeddings_agree_with_pillow_path(lite0):
    photos = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))]
    small = jpeg(cat().resize((32, 32)), quality=95)  # CIFAR-sized: upscaled to 256, cropped to 224
    gray = jpeg(cat().convert("L"), quality=90)
    big = jpeg(cat().resize((1280, 852)), quality=90)  # Pillow draft()s it, the tensor path does not
    datas = photos + [small, gray, big]
    assert all(deferrable(d) is not None for d in datas)
    images = decode_batch(datas, CPU)
    assert [tuple(im.shape) for im in images][-3:] == [(3, 32, 32), (3, 213, 320), (3, 852, 1280)]
    assert all(im.dtype == torch.uint8 for im in images)
    x = resize_normalize(images, lite0.spec.preprocessing, CPU)
    y = torch.stack([lite0.transform(decode_image(d, draft_size=256).image) for d in datas])
    assert x.shape == y.shape == (len(datas), 3, 224, 224) and x.dtype == torch.float32
    assert float((x - y).abs().mean()) < 0.02  # normalised scale, (x*255-127)/128: ~2.5 grey levels
    a, b = lite0.embed_batch(x), lite0.embed_batch(y)
    cosines = (a * b).sum(axis=1)  # both L2-normalised
    assert cosines.min() > COSINE_FLOOR, cosines
    # Rows follow the input order, not the grouping by size: each row is nearest its own twin.
    assert ((a @ b.T).argmax(axis=1) == np.arange(len(datas))).all()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orient_matches_pillow_exif_transpose(orientation):
    stored = Image.fromarray(np.random.default_rng(orientation).integers(0, 255, (5, 7, 3), dtype=np.uint8))
    exif = stored.getexif()
    exif[0x0112] = orientation
    upright = np.asarray(ImageOps.exif_transpose(stored))
    tensor = torch.from_numpy(np.asarray(stored).copy()).permute(2, 0, 1)
    got = orient(tensor, orientation).permute(1, 2, 0).numpy()
    assert got.shape == upright.shape
    assert (got == upright).all()


def test_exif_rotated_jpeg_is_upright_through_the_tensor_path(lite0):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = jpeg(cat().transpose(Image.Transpose.ROTATE_90), quality=95, exif=exif.tobytes())
    header = deferrable(data)
    assert (header.width, header.height, header.orientation) == (320, 213, 6)
    decoded = decode_image(data)
    assert (header.width, header.height, header.metadata) == (decoded.width, decoded.height, decoded.metadata)
    image = orient(decode_batch([data], CPU)[0], header.orientation)
    assert tuple(image.shape) == (3, 213, 320)
    pil = torch.from_numpy(np.asarray(decoded.image).copy()).permute(2, 0, 1)
    assert (image.float() - pil.float()).abs().mean() < 2  # same decoder family, same pixels


def test_only_complete_baseline_rgb_or_gray_jpegs_go_to_the_device():
    plain = jpeg(cat(), quality=90)
    png = io.BytesIO()
    cat().save(png, "PNG")
    wide = jpeg(Image.new("RGB", (202, 2)))  # 101:1, over the aspect limit
    huge = bytearray(jpeg(Image.new("RGB", (16, 16))))
    sof = huge.index(b"\xff\xc0")
    huge[sof + 5 : sof + 9] = (20_000).to_bytes(2, "big") * 2  # the header says 20000x20000 px
    assert deferrable(plain).metadata == {"format": "JPEG", "mode": "RGB"}
    assert deferrable(jpeg(cat().convert("L"))).metadata["mode"] == "L"
    refused = {
        "progressive": jpeg(cat(), progressive=True),
        "cmyk": jpeg(cat().convert("CMYK")),
        "cut short": plain[: len(plain) // 2],
        "png": png.getvalue(),
        "empty": b"",
        "over the aspect limit": wide,
        "over the pixel limit": bytes(huge),
    }
    assert {name: deferrable(d) for name, d in refused.items()} == dict.fromkeys(refused)
    assert deferrable(plain + b"\x00" * 16) is not None  # zero padding after EOI is common


def test_a_refused_jpeg_does_not_lose_the_rest_of_its_batch():
    good = (PHOTOS / "coffee_cup.jpg").read_bytes()
    bad = broken_scan_header(good)
    assert deferrable(bad) is not None  # its header is fine: it reaches the decoder
    out = decode_batch([good, bad, good], CPU)
    assert out[1] is None
    assert tuple(out[0].shape) == tuple(out[2].shape) == (3, 213, 320)


def test_decode_gpu_without_cuda_is_one_line_with_the_fix():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --decode gpu is available")
    with pytest.raises(DecodeUnavailable, match=r"^--decode gpu needs a CUDA GPU but torch sees none; "
                                                r"pass --decode cpu \(or auto\)$"):
        choose_decoder("gpu", CPU, {})
    assert choose_decoder("auto", CPU, {}) is None and choose_decoder("cpu", CPU, {}) is None
    with pytest.raises(ValueError, match="--decode must be one of auto, cpu, gpu, got 'nvjpeg'"):
        choose_decoder("nvjpeg", CPU, {})


def test_cli_decode_gpu_without_cuda_is_one_line(database_url, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: --decode gpu is available")
    from click.testing import CliRunner
    from pgvision.cli import main

    shutil.copy(PHOTOS / "coffee_cup.jpg", tmp_path)
    result = CliRunner().invoke(main, ["load", str(tmp_path), "--decode", "gpu", "--quiet"],
                                env={"DATABASE_URL": database_url})
    assert result.exit_code == 1
    assert result.output == "Error: --decode gpu needs a CUDA GPU but torch sees none; pass --decode cpu (or auto)\n"


class CountingDecoder(TensorDecoder):
    """The device decoder on the CPU, counting what reached it (to prove the path ran), and
    refusing the files in ``refuse`` as nvJPEG refuses some that Pillow decodes (arithmetic
    coding): those must come back through Pillow, loaded."""

    deferred: int = 0
    refuse: frozenset = frozenset()

    def finish(self, batch, transform, draft_size):
        self.deferred += len(batch.deferred)
        return super().finish(batch, transform, draft_size)

    def decode(self, datas):
        out = super().decode(datas)
        return [None if d in self.refuse else im for d, im in zip(datas, out)]


def test_load_through_the_tensor_path_matches_the_cpu_path(database_url, lite0, tmp_path):
    folder = tmp_path / "odd"
    expected = write_bad_and_odd_files(folder)  # 8 loadable (CMYK, 16-bit, EXIF-rotated, ...), 4 broken
    for name in ("chelsea_cat", "coffee_cup", "falcon9_rocket", "astronaut_eileen_collins"):
        shutil.copy(PHOTOS / f"{name}.jpg", folder)
    (folder / "progressive.jpg").write_bytes(jpeg(cat().rotate(5), progressive=True))
    (folder / "broken_scan.jpg").write_bytes(broken_scan_header((PHOTOS / "coffee_cup.jpg").read_bytes()))
    device_model = load_image_model("efficientnet-lite0", name="lite0-tensor-path", device="cpu")
    # 100,000 px a call: each 320x213 photo is decoded in a call of its own; two files the
    # "device" refuses are decoded by Pillow instead, their rows placed apart from the device
    # rows: rows and records must still pair up (the per-image cosines below check it).
    decoder = CountingDecoder(CPU, device_model.spec.preprocessing, max_pixels=100_000)
    decoder.refuse = frozenset({(folder / "gray.jpg").read_bytes(), (folder / "coffee_cup.jpg").read_bytes()})
    with connect(database_url, autocommit=True) as conn:
        cpu = load_images(conn, [folder], lite0, batch_size=5, workers=1, progress=False, decode="cpu")
        dev = load_images(conn, [folder], device_model, batch_size=5, workers=1, progress=False, decode=decoder)
        # gray.jpg, rotated.jpg, the 4 photos and broken_scan.jpg reach the device decoder;
        # cmyk.jpg, progressive.jpg, truncated.jpg and the other formats do not.
        assert decoder.deferred == 7
        want_skips = {"empty": 1, "truncated": 2, "not-an-image": 1, "decompression-bomb": 1}
        assert dict(cpu.skipped) == dict(dev.skipped) == want_skips
        assert sorted(cpu.skipped_files) == sorted(dev.skipped_files)
        assert cpu.loaded == dev.loaded == sum(o == "ok" for o in expected.values()) + 4 + 1 == 13
        assert "device_decode" in dev.seconds and "device_decode" not in cpu.seconds
        assert dev.seconds["startup"] >= 0 and dev.seconds["total"] >= dev.seconds["startup"]
        # Same images (by content), same sizes and metadata, vectors within the tolerance.
        rows = conn.execute(
            """SELECT i.uri, a.embedding::vector(1280) <=> b.embedding::vector(1280)
               FROM pgvision.images i
               JOIN pgvision.image_embeddings a ON a.image_id = i.image_id AND a.model_id = %s
               JOIN pgvision.image_embeddings b ON b.image_id = i.image_id AND b.model_id = %s""",
            (cpu.model_id, dev.model_id),
        ).fetchall()
        assert len(rows) == 13
        worst = max(rows, key=lambda r: r[1])
        assert 1 - worst[1] > COSINE_FLOOR, worst
        rotated = conn.execute(
            "SELECT width, height, metadata->>'exif_orientation' FROM pgvision.images WHERE uri LIKE '%%/rotated.jpg'"
        ).fetchone()
        assert rotated == (320, 213, "6")


class Failing:
    """A batch whose embeddings fail to arrive (as a model of the wrong width would)."""

    seconds = 0.0

    def result(self):
        raise ValueError("model m gave 4-d vectors but 3 were declared; pass --dims 4")


def test_writer_commits_in_order_and_raises_its_error_in_the_caller(database_url):
    import hashlib

    from pgvision import registry
    from pgvision.ingest.pg_copy import ImageRecord
    from pgvision.ingest.writer import BatchWriter
    from pgvision.registry import ModelSpec

    def records(*names):
        return [ImageRecord(sha256=hashlib.sha256(n.encode()).digest(), uri=f"file:///{n}") for n in names]

    vectors = np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)
    seen = []
    with connect(database_url, autocommit=True) as conn, connect(database_url, autocommit=True) as check:
        model_id = registry.register_model(conn, ModelSpec(name="m", kind="image", dims=3, metric="l2"))
        writer = BatchWriter(conn, model_id, 3, total_files=7, depth=1, on_batch=seen.append)
        writer.submit(records("a", "b"), vectors, files=2)
        writer.submit(records("c"), vectors, files=2, rows=[1])  # one file of the batch was skipped
        writer.submit(records("d", "e"), Failing(), files=2)
        with pytest.raises(ValueError, match="^model m gave 4-d vectors but 3 were declared; pass --dims 4$"):
            writer.submit(records("f"), vectors[:1], files=1)  # raises here, or is dropped after the failure
            writer.close()
        writer.abandon()
        assert seen == [2, 3] and (writer.loaded, writer.files_done) == (3, 4)
        stored = check.execute(
            "SELECT i.uri, e.embedding::text FROM pgvision.image_embeddings e JOIN pgvision.images i USING (image_id) "
            "ORDER BY 1"
        ).fetchall()
        assert stored == [("file:///a", "[1,0,0]"), ("file:///b", "[0,1,0]"), ("file:///c", "[0,1,0]")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (nvJPEG); the CPU tests above cover the code")
def test_cuda_decode_and_resize_agree_with_the_cpu_run_of_the_same_functions(lite0):
    cuda = torch.device("cuda")
    datas = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))] + [jpeg(cat().convert("L"))]
    on_gpu = decode_batch(datas, cuda)
    on_cpu = decode_batch(datas, CPU)
    assert all(g is not None and g.device.type == "cuda" for g in on_gpu)
    for g, c in zip(on_gpu, on_cpu):  # nvJPEG vs libjpeg-turbo: same sizes, IDCTs a few levels apart
        assert g.shape == c.shape and (g.cpu().float() - c.float()).abs().mean() < 3
    x = resize_normalize(on_gpu, lite0.spec.preprocessing, cuda)
    assert x.device.type == "cuda" and x.shape == (len(datas), 3, 224, 224)
    y = torch.stack([lite0.transform(decode_image(d, draft_size=256).image) for d in datas])
    a, b = lite0.embed_batch(x.cpu()), lite0.embed_batch(y)
    assert (a * b).sum(axis=1).min() > COSINE_FLOOR
