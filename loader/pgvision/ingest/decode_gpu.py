"""Decoding on the model's device: JPEG bytes -> model input tensors with torchvision.

The second implementation of the loader's decode/preprocess stage (``image files ->
tensors``, DESIGN.md); the first is :func:`pgvision.ingest.images.decode_image` +
:func:`pgvision.models.embed.build_transform` with Pillow in the DataLoader workers. Both take a
file's bytes as :func:`pgvision.ingest.files.read_file` returns them (regular files only, under the
size limit) and give ``(3, crop, crop)`` float32 rows for the same preprocessing dict, with
the same skip reasons.

The work is split in two:

* **in the DataLoader workers, per file** (CPU): :func:`deferrable` reads the header with
  Pillow (:func:`pgvision.ingest.images.read_header`: no pixel decoded; the pixel-count and aspect
  limits checked) and says whether the file can go to the device: a baseline (not
  progressive) JPEG in RGB or grayscale that ends with its EOI marker. Everything else
  (PNG, WebP, CMYK or YCCK JPEG, progressive JPEG, a file cut short, a header Pillow
  refuses) is decoded on the CPU exactly as before, so it keeps today's skip reasons.
* **in the main process, per batch** (the model's device): :func:`decode_batch` (all the
  batch's JPEGs in one ``torchvision.io.decode_jpeg`` call: nvJPEG's batched decoder on
  CUDA), :func:`orient` (EXIF orientation), :func:`resize_normalize` (resize the shorter
  side, centre-crop, scale, standardise, batched per image size). A JPEG the device decoder
  refuses is decoded again on the CPU with Pillow: it is either loaded or skipped with the
  reason Pillow gives (``truncated``, ``unreadable``, ...).

**Ordering on CUDA.** nvJPEG's batched (hardware) decoder does not wait for the work already
queued on the caller's stream before it writes its outputs, and those outputs come from
PyTorch's caching allocator, which hands out a block as soon as it is freed on its stream:
the decoder can be given memory that a queued forward pass or resize is still reading, and
overwrite it (wrong embeddings, silently). So every device decode here first waits on a CUDA
event recorded after all the work queued so far on the current stream (the previous batch's
model call and resizes): :func:`wait_for_queued_work`. Sources: pytorch/vision PR #9606 and
meta-pytorch/torchcodec PR #1634 ("draining the caller's stream before the decode" removes
the corruption in their reproduction).

**Device failures.** An out-of-memory or a CUDA error (a sticky error leaves the device
unusable) while decoding is not a bad file: :func:`decode_batch` raises
:class:`DeviceFailure` at once instead of retrying file by file, and :class:`TensorDecoder`
stops decoding on the device for the rest of the load (the batch's JPEGs are decoded by
Pillow), remembering what happened for the load's summary.

Every function takes a ``torch.device``; the tests run them with ``"cpu"`` (torchvision's
CPU ``decode_jpeg`` is libjpeg-turbo, the CUDA one nvJPEG) and compare the embeddings with
the Pillow path's. Sources: ``torchvision.io.decode_jpeg`` (torchvision 0.19+: a list of
CPU uint8 tensors, ``device="cuda"`` decodes them in one batched nvJPEG call, "does not
return partial results in case of an error"), ``torchvision.transforms.v2.functional.resize``
(its output size rule is the one the Pillow path's ``Resize`` uses).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from pgvision.errors import InvalidValue, PgvisionError
from pgvision.ingest.images import ImageHeader, ImageSkipped, decode_image, read_header

__all__ = ["DECODE_CHOICES", "DecodeUnavailable", "DeviceFailure", "TensorDecoder", "choose_decoder", "deferrable",
           "decode_batch", "device_failure", "orient", "resize_normalize", "wait_for_queued_work"]

#: ``--decode`` values: ``auto`` (the CPU: see :func:`choose_decoder`), ``cpu``, ``gpu``.
DECODE_CHOICES: tuple[str, ...] = ("auto", "cpu", "gpu")

#: Pillow modes of JPEGs the device decodes (``ImageReadMode.RGB`` gives what Pillow's
#: ``convert("RGB")`` gives for them); CMYK/YCCK JPEGs (Adobe inversion) stay on the CPU.
_DEVICE_MODES = frozenset({"RGB", "L"})

_EOI = b"\xff\xd9"

#: Pixels (width x height, summed) decoded on the device in one call. A batch of large
#: photos is decoded in several calls so that device memory stays bounded: 256 Mpx is
#: 768 MB of decoded RGB and ~3 GB as float32 while resizing (256 CIFAR images: 0.26 Mpx;
#: 256 12-Mpx photos: 12 calls).
MAX_DEVICE_PIXELS: int = 256_000_000


class DecodeUnavailable(PgvisionError):
    """``--decode gpu`` asked for where no CUDA device runs the model."""


class DeviceFailure(PgvisionError):
    """The device failed while decoding JPEGs (out of memory, a CUDA error): no file's fault.

    Attributes:
        sticky: True when the device is unusable for the rest of the process (a CUDA error
            that every later call reports again); False for an out-of-memory.
    """

    def __init__(self, message: str, sticky: bool) -> None:
        super().__init__(message)
        self.sticky = sticky


_STICKY_FIX = "; the batches committed before it are kept: rerun with --decode cpu to load the rest"


def device_failure(exc: BaseException, device: torch.device) -> DeviceFailure | None:
    """A :class:`DeviceFailure` when ``exc`` (raised by ``decode_jpeg``) is the device's fault, else None.

    Out of memory: ``torch.OutOfMemoryError`` or an nvJPEG allocation failure. A CUDA error:
    ``torch.AcceleratorError`` (torch 2.8+), a ``CUDA error`` message, or a device that fails
    ``torch.cuda.synchronize`` after the call (the error is sticky). Anything else is the
    data's fault (the decoder refused the file).

    Args:
        exc: what ``decode_jpeg`` raised.
        device: the device it decoded on.
    """
    text = " ".join(str(exc).split())[:200]
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower() or "ALLOCATOR_FAILURE" in text:
        return DeviceFailure(f"out of memory on {device} while decoding JPEGs: {text}", sticky=False)
    accelerator_error = getattr(torch, "AcceleratorError", ())
    if isinstance(exc, accelerator_error) or "CUDA error" in text:
        return DeviceFailure(f"CUDA error on {device} while decoding JPEGs: {text}{_STICKY_FIX}", sticky=True)
    if device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
        except Exception as probe:  # noqa: BLE001 (whatever the driver raises: the device is gone)
            detail = " ".join(str(probe).split())[:200]
            return DeviceFailure(f"CUDA error on {device} while decoding JPEGs: {detail}{_STICKY_FIX}", sticky=True)
    return None


def wait_for_queued_work(device: torch.device) -> None:
    """Block until the work queued on ``device``'s current CUDA stream has run (no-op on the CPU).

    Records a CUDA event after everything queued so far (the previous batch's model call,
    earlier resizes) and waits for it on the host, so that nvJPEG, which writes its outputs
    without waiting for that stream, is never handed memory those kernels still read (see
    the module docstring).
    """
    if device.type != "cuda":
        return
    done = torch.cuda.Event()
    done.record(torch.cuda.current_stream(device))
    done.synchronize()


def deferrable(data: bytes) -> ImageHeader | None:
    """The header of a file the device decoder can take, else None (decode it on the CPU).

    Runs in the DataLoader workers: Pillow parses the header only (no pixel decoded) and
    the pixel-count and aspect-ratio limits of :func:`pgvision.ingest.images.read_header` are
    checked here, so no file over them ever reaches ``decode_jpeg``.

    Args:
        data: the file's bytes (:func:`pgvision.ingest.files.read_file`).

    Returns:
        :class:`pgvision.ingest.images.ImageHeader` for a baseline JPEG in RGB or grayscale mode
        whose data ends with the EOI marker (``FF D9``, trailing zero padding allowed);
        None for anything else, including every file :func:`read_header` refuses (the CPU
        decoder then gives the file its skip reason).
    """
    if not data.startswith(b"\xff\xd8") or not data.rstrip(b"\x00").endswith(_EOI):
        return None  # not a JPEG, or cut short: Pillow says which ("truncated", ...)
    try:
        header = read_header(data)
    except ImageSkipped:
        return None
    if header.metadata.get("format") != "JPEG" or header.metadata.get("mode") not in _DEVICE_MODES:
        return None
    if header.progressive:
        return None  # nvJPEG's hardware/batched path is for baseline; keep progressive on the CPU
    return header


def decode_batch(datas: Sequence[bytes], device: torch.device | str) -> list[torch.Tensor | None]:
    """Decode JPEGs to RGB on ``device``, all in one ``torchvision.io.decode_jpeg`` call.

    Args:
        datas: JPEG files' bytes (files :func:`deferrable` accepted).
        device: ``cuda`` (nvJPEG, batched) or ``cpu`` (libjpeg-turbo; what tests use).

    Returns:
        One entry per input, in order: a ``(3, H, W)`` uint8 tensor on ``device`` (the file's
        stored orientation, not EXIF-rotated: see :func:`orient`), or None for a file the
        decoder refused (``decode_jpeg`` returns nothing of a batch with one bad file, so the
        batch is then decoded one file at a time to find it).

    Raises:
        DeviceFailure: the device ran out of memory or failed (:func:`device_failure`); raised
            at the first such error, never retried file by file. Bad data never raises.

    On CUDA every ``decode_jpeg`` call first waits for the work already queued on the
    current stream (:func:`wait_for_queued_work`).
    """
    if not datas:
        return []
    device = torch.device(device)
    tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in datas]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29's deprecation note; libjpeg's "corrupt data" notes
        try:
            wait_for_queued_work(device)
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
        except Exception as exc:  # RuntimeError from libjpeg/nvJPEG: one bad file fails the batch
            failure = device_failure(exc, device)
            if failure is not None:
                raise failure from exc
        out: list[torch.Tensor | None] = []
        for t in tensors:
            try:
                wait_for_queued_work(device)
                out.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
            except Exception as exc:
                failure = device_failure(exc, device)
                if failure is not None:
                    raise failure from exc
                out.append(None)
        return out


def orient(image: torch.Tensor, orientation: int | None) -> torch.Tensor:
    """Apply an EXIF orientation to a ``(C, H, W)`` tensor, as ``PIL.ImageOps.exif_transpose``.

    Args:
        image: ``(C, H, W)`` tensor, any dtype and device.
        orientation: EXIF tag 0x0112 (TIFF 6.0 / EXIF 2.3): 1 (or None) as stored, 2 mirrored,
            3 rotated 180, 4 flipped, 5 transposed, 6 rotated 90 clockwise to be upright,
            7 transversed, 8 rotated 90 counter-clockwise to be upright.

    Returns:
        The upright tensor (a view where possible).
    """
    if orientation == 2:
        return image.flip(-1)
    if orientation == 3:
        return image.flip(-1, -2)
    if orientation == 4:
        return image.flip(-2)
    if orientation == 5:
        return image.transpose(-1, -2)
    if orientation == 6:
        return image.transpose(-1, -2).flip(-1)
    if orientation == 7:
        return image.transpose(-1, -2).flip(-1, -2)
    if orientation == 8:
        return image.transpose(-1, -2).flip(-2)
    return image


_INTERPOLATION = {"bilinear": F.InterpolationMode.BILINEAR, "bicubic": F.InterpolationMode.BICUBIC}


def resize_normalize(images: Sequence[torch.Tensor], preprocessing: dict, device: torch.device | str) -> torch.Tensor:
    """Model inputs from decoded images: the tensor twin of :func:`pgvision.models.embed.build_transform`.

    Resize the shorter side to ``preprocessing["resize"]`` (antialiased, the dict's
    ``interpolation``; output size by torchvision's rule, the same as the Pillow path's),
    round and clamp to 0..255 as Pillow's 8-bit result is, centre-crop to ``crop``, scale to
    [0, 1], then ``(x - mean) / std``. Images of the same size are resized together.

    Args:
        images: ``(3, H, W)`` uint8 tensors (sizes may differ), e.g. from :func:`decode_batch`.
        preprocessing: the model's dict (:func:`pgvision.models.embed.preprocessing_dict`).
        device: where to compute (the images are moved there, ``non_blocking``).

    Returns:
        ``(len(images), 3, crop, crop)`` float32 tensor on ``device``, rows in input order.

    Raises:
        KeyError: ``preprocessing`` lacks ``resize``, ``crop``, ``mean`` or ``std``.

    Agreement with Pillow: torch's antialiased bicubic/bilinear kernels are not Pillow's
    bit for bit (a few grey levels apart at edges); embeddings of the same images agree
    to a cosine similarity above 0.99 (``tests/test_gpu_decode.py``).
    """
    device = torch.device(device)
    size, crop = int(preprocessing["resize"]), int(preprocessing["crop"])
    mode = _INTERPOLATION[preprocessing.get("interpolation", "bilinear")]
    mean = torch.tensor(preprocessing["mean"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing["std"], dtype=torch.float32, device=device).view(1, 3, 1, 1)
    out = torch.empty((len(images), 3, crop, crop), dtype=torch.float32, device=device)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(im.shape), []).append(i)
    for index in groups.values():
        x = torch.stack([images[i] for i in index]).to(device, non_blocking=True).float()
        x = F.resize(x, [size], interpolation=mode, antialias=True)
        x = F.center_crop(x.clamp_(0, 255).round_(), [crop, crop])
        out[torch.tensor(index, device=device)] = x
    return out.div_(255.0).sub_(mean).div_(std)


@dataclass
class TensorDecoder:
    """The decode stage on a torch device (see the module docstring).

    Args:
        device: where JPEGs are decoded and resized: the model's device (``cuda``), or
            ``cpu`` in tests.
        preprocessing: the model's dict (``ImageEmbedder.spec.preprocessing``).
        max_pixels: pixels (from the headers, summed) decoded in one ``decode_jpeg`` call;
            a batch over it is decoded in several (:data:`MAX_DEVICE_PIXELS`).
    """

    device: torch.device
    preprocessing: dict
    max_pixels: int = MAX_DEVICE_PIXELS
    #: The device failure that stopped device decoding (None while it runs); from then on
    #: every deferred JPEG is decoded by Pillow in the main process.
    failure: DeviceFailure | None = None
    #: JPEGs deferred to the device but decoded by Pillow because device decoding had stopped.
    cpu_fallback: int = 0

    def warm_up(self) -> None:
        """Decode and resize one small JPEG on the device (nvJPEG handles, CUDA kernels)."""
        from PIL import Image

        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (120, 30, 200)).save(buf, format="JPEG")
        images = [im for im in decode_batch([buf.getvalue()] * 2, self.device) if im is not None]
        if images:
            resize_normalize(images, self.preprocessing, self.device)

    def decode(self, datas: Sequence[bytes]) -> list[torch.Tensor | None]:
        """:func:`decode_batch` on :attr:`device` (one place for tests to stand in a refusal)."""
        return decode_batch(datas, self.device)

    def finish(self, batch, transform, draft_size: int | None):
        """One batch's model input: the CPU-decoded rows and the deferred JPEGs decoded here.

        Args:
            batch: a :class:`pgvision.ingest.decoding.DecodedBatch`: ``tensor`` (CPU rows or None),
                ``records`` (theirs), ``deferred`` (items with ``raw`` bytes, ``record``, ``path``).
            transform: the Pillow path's transform, for JPEGs the device decoder refuses.
            draft_size: as for :func:`pgvision.ingest.images.decode_image`.

        Returns:
            ``(tensor, records, skipped)``: ``(N, 3, crop, crop)`` float32 on :attr:`device`
            (None when N is 0), its N records in row order, and ``(path, reason, detail)``
            for refused JPEGs that Pillow could not decode either.

        Raises:
            DeviceFailure: a sticky CUDA error (the device cannot run the model either). An
                out-of-memory instead sets :attr:`failure` and the batch's JPEGs, and every
                later batch's, are decoded by Pillow (:attr:`cpu_fallback` counts them).
        """
        parts, records, skipped = [], list(batch.records), []
        if batch.tensor is not None:
            parts.append(batch.tensor.to(self.device, non_blocking=True))
        fallback, fallback_records, device_parts, device_records = [], [], [], []
        for chunk in self._chunks(batch.deferred):
            images = self._decode_or_stop(chunk)
            good = []
            for item, image in zip(chunk, images, strict=True):
                if image is not None:
                    good.append(orient(image, item.record.metadata.get("exif_orientation")))
                    device_records.append(item.record)
                    continue
                try:  # refused, or the device stopped: Pillow decides, with today's skip reasons
                    fallback.append(transform(decode_image(item.raw, draft_size=draft_size).image))
                    fallback_records.append(item.record)
                except ImageSkipped as exc:
                    skipped.append((item.path, exc.reason, exc.detail))
            if good:
                device_parts.append(resize_normalize(good, self.preprocessing, self.device))
        parts += device_parts  # rows in the order of ``records``: CPU, device, Pillow fallback
        if fallback:
            parts.append(torch.stack(fallback).to(self.device))
        records += device_records + fallback_records
        tensor = torch.cat(parts) if len(parts) > 1 else parts[0] if parts else None
        return tensor, records, skipped

    def _decode_or_stop(self, chunk: list) -> list[torch.Tensor | None]:
        """:meth:`decode` of a chunk's bytes; all None once device decoding has stopped."""
        if self.failure is None:
            try:
                return self.decode([d.raw for d in chunk])
            except DeviceFailure as exc:
                self.failure = exc
                if exc.sticky:
                    raise
        self.cpu_fallback += len(chunk)
        return [None] * len(chunk)

    def _chunks(self, items: list) -> list[list]:
        """``items`` cut into runs of at most :attr:`max_pixels` pixels (each run >= 1 item)."""
        chunks, current, pixels = [], [], 0
        for item in items:
            n = (item.record.width or 1) * (item.record.height or 1)
            if current and pixels + n > self.max_pixels:
                chunks.append(current)
                current, pixels = [], 0
            current.append(item)
            pixels += n
        return chunks + [current] if current else chunks


def choose_decoder(decode: "str | TensorDecoder", device: torch.device, preprocessing: dict) -> TensorDecoder | None:
    """The decoder for ``--decode``: None for the CPU (Pillow) path, else a :class:`TensorDecoder`.

    ``auto`` means the CPU on every device: the device decoder has not yet been shown, on a
    real GPU, to give the same embeddings as the CPU path on the same files
    (``tests/test_gpu_decode.py``'s CUDA tests are that check); ``gpu`` asks for it.

    Args:
        decode: ``auto`` (the CPU), ``cpu``, ``gpu``, or a :class:`TensorDecoder` (returned
            as is: tests run the device path on the CPU).
        device: the model's device.
        preprocessing: the model's dict.

    Raises:
        DecodeUnavailable: ``gpu`` without a CUDA device for the model.
        pgvision.errors.InvalidValue: an unknown name.
    """
    if isinstance(decode, TensorDecoder):
        return decode
    if decode not in DECODE_CHOICES:
        raise InvalidValue(f"--decode must be one of {', '.join(DECODE_CHOICES)}, got {decode!r}")
    if decode in ("cpu", "auto"):
        return None
    if device.type != "cuda":
        if not torch.cuda.is_available():
            raise DecodeUnavailable("--decode gpu needs a CUDA GPU but torch sees none; pass --decode cpu (or auto)")
        raise DecodeUnavailable("--decode gpu decodes on the model's GPU but the model runs on the cpu; "
                                "pass --device cuda, or --decode cpu")
    return TensorDecoder(device, preprocessing)


def check_decode_option(decode: str, device: str) -> None:
    """Refuse ``--decode gpu`` with ``--device`` ``cpu`` or ``auto`` without a GPU, before any model loads.

    Raises:
        DecodeUnavailable: as :func:`choose_decoder` would, after the model had loaded.
    """
    if decode == "gpu" and device in ("auto", "cpu"):
        choose_decoder(decode, torch.device("cuda" if device == "auto" and torch.cuda.is_available() else "cpu"), {})
