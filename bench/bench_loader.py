"""Images end to end: ``pgvision load`` against the model alone on the same decoded tensors.

    python bench/bench_loader.py                       # ../shared/data/imagenet_samples, 100 photos
    python bench/bench_loader.py --folder ../shared/data/cifar10_test --limit 500 --reps 5

Two methods, same images, same model (efficientnet-lite0 by default), same torch thread
count (``--threads``, default: all cores), interleaved rounds, medians of ``--reps``:

* **model alone**: every image decoded and preprocessed beforehand (untimed) into
  ``--batch-size`` tensors; the timed run is ``ImageEmbedder.embed_batch`` over them: the
  ceiling, what the model costs with nothing else to do.
* **loader**: ``pipeline.load_images`` into a freshly emptied database: find, hash, look up,
  decode + preprocess in ``--workers`` DataLoader processes, embed, binary COPY per batch,
  index build. Wall clock from the call to its return.

Prints img/s of both, their ratio (goal >= 0.85x), and the loader's stage split (seconds
hashing, decoding (summed over workers), waiting for decoded batches, embedding, copying,
building the index). Machines here are shared and noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from common import REPO, add_server_args, bench_database, connect, interleaved, machine, median, print_machine, \
    print_table, write_results

sys.path.insert(0, str(REPO / "loader"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=REPO.parent / "shared" / "data" / "imagenet_samples",
                    help="images to load (default ../shared/data/imagenet_samples)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N files (default all)")
    ap.add_argument("--model", default="efficientnet-lite0", help="model name (default efficientnet-lite0)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    ap.add_argument("--workers", type=int, default=1, help="loader decode processes (default 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for both (default: all cores)")
    add_server_args(ap)
    args = ap.parse_args()
    if not args.folder.exists():
        sys.exit(f"{args.folder} is absent: pass --folder with some images")

    import torch

    from pgvision.images import decode_image, find_images
    from pgvision.models import load_image_model
    from pgvision.pipeline import load_images

    torch.set_num_threads(args.threads)
    embedder = load_image_model(args.model, device="cpu")
    files = find_images([args.folder], limit=args.limit)
    draft = embedder.spec.preprocessing.get("resize")
    tensors = [embedder.transform(decode_image(f.read_bytes(), draft_size=draft).image) for f in files]
    batches = [torch.stack(tensors[i : i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
    embedder.embed_batch(batches[0])  # warm-up (allocator, oneDNN kernels)

    with bench_database("loader", args.data_dir) as url, connect(url) as conn:
        info = machine(conn)
        print_machine(info)
        summaries = []

        def model_alone():
            for b in batches:
                embedder.embed_batch(b)

        def loader():
            summaries.append(load_images(conn, [args.folder], embedder, batch_size=args.batch_size,
                                         workers=args.workers, limit=args.limit, progress=False))
            assert summaries[-1].loaded == len(files), summaries[-1].format()

        def reset(name):
            if name == "loader":
                conn.execute("TRUNCATE pgvision.image_embeddings, pgvision.images, pgvision.models CASCADE")

        times = interleaved({"model alone": model_alone, "loader": loader}, args.reps, before=reset)

    n = len(files)
    rate = {k: n / median(v) for k, v in times.items()}
    ratio = rate["loader"] / rate["model alone"]
    stages = {k: median([s.seconds[k] for s in summaries]) for k in summaries[0].seconds}
    print(f"\n{n} images from {args.folder}, model {args.model}, batch {args.batch_size}, "
          f"torch threads {args.threads}, loader workers {args.workers}, {args.reps} reps (medians)")
    print_table(["method", "seconds", "img/s", "vs model alone"],
                [["model alone (decoded tensors)", median(times["model alone"]), rate["model alone"], 1.0],
                 ["pgvision load (end to end)", median(times["loader"]), rate["loader"], ratio]])
    print_table(["stage", "seconds (median)"], [[k, v] for k, v in stages.items()],
                title="loader stage split (decode is summed over worker processes; it overlaps embed)")
    print(f"\nloader / model alone: {ratio:.2f}x (goal >= 0.85x)")
    write_results("bench_loader", {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                   "images": n, "seconds": times, "img_per_s": rate, "ratio": ratio,
                                   "stages": stages})


if __name__ == "__main__":
    main()
