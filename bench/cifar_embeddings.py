"""Real embeddings for the search benchmark: CIFAR-10 test JPEGs through efficientnet-lite0.

Computed once and cached under ``bench/out/`` (gitignored), because embedding 10,000 images
on a 2-core CPU takes minutes. The images are read from ``../shared/data/cifar10_test``
(``<class>/*.jpg``) or ``--data``; the first ``n / 10`` files of each class (sorted) are used.
Embedding goes through pgvision's own model zoo and preprocessing
(:func:`pgvision.models.load_image_model`, :func:`pgvision.load_images.embed_files`'s decode),
so the vectors are those ``pgvision load`` stores (1280-d, L2-normalised, cosine).

Run on its own to fill the cache::

    .venv/bin/python bench/cifar_embeddings.py --images 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "cifar10_test"


def cifar_files(data: Path, n: int) -> tuple[list[Path], list[str]]:
    classes = sorted(p.name for p in data.iterdir() if p.is_dir())
    per = max(1, n // len(classes))
    files, labels = [], []
    for c in classes:
        for f in sorted((data / c).glob("*.jpg"))[:per]:
            files.append(f)
            labels.append(c)
    return files, labels


def cifar_embeddings(n: int = 10000, data: Path | None = None, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors (N, 1280) float32, labels (N,) str)``, from the cache when present.

    Raises:
        FileNotFoundError: the CIFAR-10 folder is absent (pass ``--data``).
    """
    data = Path(data or DEFAULT_DATA)
    cache = OUT / f"cifar10_efficientnet-lite0_{n}.npz"
    if cache.exists():
        z = np.load(cache)
        return z["vectors"], z["labels"]
    if not data.is_dir():
        raise FileNotFoundError(f"CIFAR-10 test images not found at {data}: pass --cifar-data DIR")
    import torch

    from pgvision.ingest.images import decode_image
    from pgvision.models import load_image_model

    torch.set_num_threads(2)
    embedder = load_image_model("efficientnet-lite0", device="cpu")
    files, labels = cifar_files(data, n)
    draft = embedder.spec.preprocessing.get("resize")
    out = []
    t0 = time.perf_counter()
    for i in range(0, len(files), batch):
        images = [decode_image(f.read_bytes(), draft_size=draft).image for f in files[i : i + batch]]
        out.append(embedder.embed_images(images))
        done = i + len(images)
        print(f"\rembedded {done}/{len(files)} ({done / (time.perf_counter() - t0):.0f} img/s)", end="", file=sys.stderr)
    print(file=sys.stderr)
    vectors = np.concatenate(out).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors, labels=np.array(labels))
    return vectors, np.array(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000, help="images to embed, spread evenly over the 10 classes")
    ap.add_argument("--data", type=Path, default=None, help=f"CIFAR-10 test folder (default {DEFAULT_DATA})")
    a = ap.parse_args()
    v, labels = cifar_embeddings(a.images, a.data)
    print(f"{v.shape[0]} x {v.shape[1]} embeddings, {len(set(labels.tolist()))} classes, cached in {OUT}")


if __name__ == "__main__":
    main()
