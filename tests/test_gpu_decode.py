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
* ``--decode gpu`` on this machine (no CUDA) is one line with the fix; ``--decode auto`` is
  the CPU path on every device;
* a device failure (out of memory, a CUDA error) is raised at the first ``decode_jpeg`` call,
  not retried file by file; an out-of-memory stops device decoding for the rest of the load
  (counted in the summary, nothing lost), a sticky CUDA error stops the load (what was
  committed stays, a rerun loads the rest);
* on a CUDA GPU (skipped here, saying so): decoding while a forward pass whose input was just
  freed is still queued leaves both the embeddings and the decoded pixels intact, and a load
  with ``--decode gpu`` gives the CPU path's rows, skips (corrupt and arithmetic-coded JPEGs
  included) and, within the tolerance, vectors.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is not installed: these tests need pip install 'pgvision[images]'")

import torch
from PIL import Image, ImageOps

from pgvision.ingest import decode_gpu
from pgvision.ingest.decode_gpu import (
    DecodeUnavailable,
    DeviceFailure,
    TensorDecoder,
    choose_decoder,
    decode_batch,
    deferrable,
    device_failure,
    orient,
    resize_normalize,
)
from pgvision.ingest.images import decode_image
from pgvision.load_images import load_images
from pgvision.models import load_image_model
from pgvision.server.connection import connect
from test_loader import write_bad_and_odd_files

PHOTOS = Path(__file__).resolve().parent / "fixtures" / "photos"
#: An arithmetic-coded JPEG (SOF9): Pillow decodes it, nvJPEG refuses it (fixtures/jpeg/SOURCES.md).
ARITHMETIC = Path(__file__).resolve().parent / "fixtures" / "jpeg" / "arithmetic_coffee_cup.jpg"
CPU = torch.device("cpu")
CUDA_REASON = "needs a CUDA GPU (nvJPEG, CUDA streams); this machine has none: the CPU tests cover the rest"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_REASON)

#: Per-image cosine similarity floor between the tensor path's and the Pillow path's
#: embeddings (measured 0.9995+ on these photos; resize kernels differ, see module doc).
COSINE_FLOOR = 0.99


@pytest.fixture(scope="module")
def lite0():
    return load_image_model("efficientnet-lite0", device="cpu")


def assert_same_embeddings(conn, model_a: int, model_b: int, *, images: int) -> None:
    """Both models embedded the same ``images`` images, each pair within :data:`COSINE_FLOOR`."""
    rows = conn.execute(
        """SELECT i.uri, a.embedding::vector(1280) <=> b.embedding::vector(1280)
           FROM pgvision.images i
           JOIN pgvision.image_embeddings a ON a.image_id = i.image_id AND a.model_id = %s
           JOIN pgvision.image_embeddings b ON b.image_id = i.image_id AND b.model_id = %s""",
        (model_a, model_b),
    ).fetchall()
    assert len(rows) == images
    worst = max(rows, key=lambda r: r[1])
    assert 1 - worst[1] > COSINE_FLOOR, worst


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
        return [None if d in self.refuse else im for d, im in zip(datas, out, strict=True)]


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
        assert_same_embeddings(conn, cpu.model_id, dev.model_id, images=13)
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


@needs_cuda
def test_cuda_decode_and_resize_agree_with_the_cpu_run_of_the_same_functions(lite0):
    cuda = torch.device("cuda")
    datas = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))] + [jpeg(cat().convert("L"))]
    on_gpu = decode_batch(datas, cuda)
    on_cpu = decode_batch(datas, CPU)
    assert all(g is not None and g.device.type == "cuda" for g in on_gpu)
    for g, c in zip(on_gpu, on_cpu, strict=True):  # nvJPEG vs libjpeg-turbo: same sizes, IDCTs a few levels apart
        assert g.shape == c.shape and (g.cpu().float() - c.float()).abs().mean() < 3
    x = resize_normalize(on_gpu, lite0.spec.preprocessing, cuda)
    assert x.device.type == "cuda" and x.shape == (len(datas), 3, 224, 224)
    y = torch.stack([lite0.transform(decode_image(d, draft_size=256).image) for d in datas])
    a, b = lite0.embed_batch(x.cpu()), lite0.embed_batch(y)
    assert (a * b).sum(axis=1).min() > COSINE_FLOOR


def test_decode_auto_means_the_cpu_even_for_a_model_on_cuda():
    # choose_decoder reads only the device's type: a cuda device object needs no GPU.
    assert choose_decoder("auto", torch.device("cuda"), {}) is None
    assert isinstance(choose_decoder("gpu", torch.device("cuda"), {}), TensorDecoder)


def test_cli_help_says_what_decode_auto_means():
    from click.testing import CliRunner

    from pgvision.cli import main

    result = CliRunner().invoke(main, ["load", "--help"])
    assert result.exit_code == 0
    assert ("auto = cpu, on every device, until GPU decoding has been shown on a real GPU to give the same "
            "embeddings as the CPU path.") in " ".join(result.output.split())


def raising(exc: BaseException, calls: list):
    """A stand-in for ``torchvision.io.decode_jpeg`` that records its calls and raises ``exc``."""

    def decode_jpeg(data, **kwargs):
        calls.append(len(data) if isinstance(data, list) else 1)
        raise exc

    return decode_jpeg


@pytest.mark.parametrize("exc, message, sticky", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "out of memory on cpu while decoding JPEGs: CUDA out of memory. Tried to allocate 2.00 GiB", False),
    (torch.AcceleratorError("CUDA error: an illegal memory access was encountered"),
     ("CUDA error on cpu while decoding JPEGs: CUDA error: an illegal memory access was encountered; the batches "
      "committed before it are kept: rerun with --decode cpu to load the rest"), True),
])
def test_a_device_failure_is_raised_at_once_not_retried_file_by_file(monkeypatch, exc, message, sticky):
    good = (PHOTOS / "coffee_cup.jpg").read_bytes()
    calls: list[int] = []
    monkeypatch.setattr(decode_gpu, "decode_jpeg", raising(exc, calls))
    with pytest.raises(DeviceFailure) as info:
        decode_batch([good, good, good], CPU)
    assert (str(info.value), info.value.sticky) == (message, sticky)
    assert calls == [3]  # the batched call only: no file-by-file retry


def test_bad_data_is_still_retried_file_by_file(monkeypatch):
    good = (PHOTOS / "coffee_cup.jpg").read_bytes()
    calls: list[int] = []
    monkeypatch.setattr(
        decode_gpu, "decode_jpeg", raising(RuntimeError("Not a JPEG file: starts with 0x00 0x00"), calls)
    )
    assert decode_batch([good, good], CPU) == [None, None]
    assert calls == [2, 1, 1]
    assert device_failure(RuntimeError("Not a JPEG file: starts with 0x00 0x00"), CPU) is None


class FailingOnCall(TensorDecoder):
    """The device decoder on the CPU whose ``fail_on``-th decode call meets ``injected`` (what
    :func:`device_failure` makes of an out-of-memory or a CUDA error on a GPU)."""

    calls: int = 0
    fail_on: int = 2
    injected: BaseException | None = None

    def decode(self, datas):
        self.calls += 1
        if self.calls == self.fail_on:
            raise device_failure(self.injected, self.device)
        return super().decode(datas)


def photo_folder(tmp_path: Path) -> Path:
    """The 4 photos and the arithmetic-coded JPEG: 5 JPEGs the device decoder takes."""
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS, folder, ignore=shutil.ignore_patterns("*.md"))
    shutil.copy(ARITHMETIC, folder)
    return folder


def test_out_of_memory_stops_device_decoding_and_the_load_goes_on_on_the_cpu(database_url, lite0, tmp_path):
    folder = photo_folder(tmp_path)
    decoder = FailingOnCall(CPU, lite0.spec.preprocessing, max_pixels=100_000)  # one photo a call
    decoder.injected = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with connect(database_url, autocommit=True) as conn:
        summary = load_images(conn, [folder], lite0, batch_size=2, workers=0, progress=False, decode=decoder)
        assert (summary.loaded, dict(summary.skipped)) == (5, {})
        assert decoder.calls == 2  # the failing call, and none after it
        assert decoder.cpu_fallback == 4  # the failing call's file, its batch-mate and the last batch's
        assert summary.device_failure == (
            "GPU decoding stopped after 1 device failure (out of memory on cpu while decoding JPEGs: CUDA out of "
            "memory. Tried to allocate 2.00 GiB); 4 JPEGs decoded on the CPU instead; pass --decode cpu")
        assert summary.format().endswith("\n" + summary.device_failure)


def test_a_sticky_cuda_error_stops_the_load_and_a_rerun_loads_the_rest(database_url, lite0, tmp_path):
    folder = photo_folder(tmp_path)
    decoder = FailingOnCall(CPU, lite0.spec.preprocessing)  # one call a batch of 2: the third batch fails
    decoder.fail_on = 3
    decoder.injected = torch.AcceleratorError("CUDA error: an illegal memory access was encountered")
    with connect(database_url, autocommit=True) as conn:
        with pytest.raises(DeviceFailure, match=r"^CUDA error on cpu while decoding JPEGs: CUDA error: an illegal "
                                                r"memory access was encountered; the batches committed before it "
                                                r"are kept: rerun with --decode cpu to load the rest$"):
            load_images(conn, [folder], lite0, batch_size=2, workers=0, progress=False, decode=decoder)
        assert conn.execute("SELECT count(*) FROM pgvision.image_embeddings").fetchone() == (4,)
        rerun = load_images(conn, [folder], lite0, batch_size=2, workers=0, progress=False, decode="cpu")
        assert (rerun.already_present, rerun.loaded) == (4, 1)


@pytest.fixture(scope="module")
def lite0_cuda():
    if not torch.cuda.is_available():
        pytest.skip(CUDA_REASON)
    return load_image_model("efficientnet-lite0", name="lite0-cuda", device="cuda")


@needs_cuda
def test_decoding_while_a_forward_pass_is_queued_corrupts_nothing(lite0_cuda):
    """The hazard itself: the model's channels-last copy of its input is freed (back to the
    caching allocator) while the forward pass is still queued, then nvJPEG decodes into
    memory from the same pool. Without the wait before the decode the decoder can be handed
    that block and overwrite it (pytorch/vision PR #9606: 134 of 200 iterations on an H100)."""
    cuda = torch.device("cuda")
    datas = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))]
    pixels = [im.clone() for im in decode_batch(datas, cuda)]  # decoded on an idle stream
    inputs = resize_normalize(pixels, lite0_cuda.spec.preprocessing, cuda).repeat(64, 1, 1, 1)  # 256 rows
    torch.cuda.synchronize()
    expected = lite0_cuda.embed_async(inputs.clone()).result()
    pillow = torch.stack([lite0_cuda.transform(decode_image(d, draft_size=256).image) for d in datas])
    cpu_path = lite0_cuda.embed_batch(pillow)  # the CPU decoding path's embeddings of the same files
    assert (expected[: len(datas)] * cpu_path).sum(axis=1).min() > COSINE_FLOOR
    for _ in range(50):
        batch = inputs.clone()
        pending = lite0_cuda.embed_async(batch)  # queued, not run
        del batch  # freed while the kernels that read it (and its channels-last copy) are queued
        decoded = decode_batch(datas, cuda)
        got = pending.result()
        assert np.abs(got - expected).max() < 1e-4
        assert (got[: len(datas)] * cpu_path).sum(axis=1).min() > COSINE_FLOOR
        assert all(torch.equal(d, p) for d, p in zip(decoded, pixels, strict=True))


@needs_cuda
def test_corrupt_and_arithmetic_jpegs_are_refused_on_the_gpu_and_left_to_pillow():
    cuda = torch.device("cuda")
    good = (PHOTOS / "coffee_cup.jpg").read_bytes()
    out = decode_batch([good, broken_scan_header(good), ARITHMETIC.read_bytes(), good], cuda)
    assert out[0] is not None and out[3] is not None and torch.equal(out[0], out[3])
    assert out[1] is None  # Pillow: truncated
    if out[2] is not None:  # nvJPEG refuses arithmetic coding; should it decode it, the pixels must be right
        cpu = decode_batch([ARITHMETIC.read_bytes()], CPU)[0]
        assert out[2].shape == cpu.shape and (out[2].cpu().float() - cpu.float()).abs().mean() < 3
    assert decode_image(ARITHMETIC.read_bytes()).image.size == (320, 213)  # Pillow decodes it


@needs_cuda
def test_load_with_decode_gpu_gives_the_cpu_paths_rows_skips_and_embeddings(database_url, lite0_cuda, tmp_path):
    folder = tmp_path / "odd"
    write_bad_and_odd_files(folder)  # 8 loadable, 4 broken
    for name in ("chelsea_cat", "coffee_cup", "falcon9_rocket", "astronaut_eileen_collins"):
        shutil.copy(PHOTOS / f"{name}.jpg", folder)
    shutil.copy(ARITHMETIC, folder)
    (folder / "broken_scan.jpg").write_bytes(broken_scan_header((PHOTOS / "coffee_cup.jpg").read_bytes()))
    cpu_model = load_image_model("efficientnet-lite0", name="lite0-cuda-cpu-decode", device="cuda")
    with connect(database_url, autocommit=True) as conn:
        cpu = load_images(conn, [folder], cpu_model, batch_size=4, workers=1, progress=False, decode="cpu")
        gpu = load_images(conn, [folder], lite0_cuda, batch_size=4, workers=1, progress=False, decode="gpu")
        assert "device_decode" in gpu.seconds and gpu.device_failure is None
        assert dict(cpu.skipped) == dict(gpu.skipped) == {"empty": 1, "truncated": 2, "not-an-image": 1,
                                                          "decompression-bomb": 1}
        assert sorted(cpu.skipped_files) == sorted(gpu.skipped_files)
        assert cpu.loaded == gpu.loaded == 8 + 4 + 1
        assert_same_embeddings(conn, cpu.model_id, gpu.model_id, images=13)
