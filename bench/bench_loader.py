"""Images end to end: ``pgvision load`` against the model alone on the same decoded tensors.

    python bench/bench_loader.py                       # ../shared/data/imagenet_samples, 100 photos
    python bench/bench_loader.py --folder ../shared/data/cifar10_test --limit 500 --reps 5
    python bench/bench_loader.py --decode cpu,gpu ...  # both decoders, interleaved (gpu: CUDA only)
    # on a GPU machine: CIFAR-10 and full-size photos, both decoders
    python bench/bench_loader.py --device cuda --folder ../shared/data/cifar10_test \\
        --batch-size 256 --workers 4 --decode cpu,gpu --reps 3
    python bench/bench_loader.py --device cuda --repeat-to 5000 --batch-size 256 --workers 4 \\
        --decode cpu,gpu --reps 3

Methods, same images, same model (efficientnet-lite0 by default), same torch thread count
(``--threads``, default: all cores), interleaved rounds, medians of ``--reps``:

* **model alone**: every image decoded and preprocessed beforehand (untimed, Pillow) into
  ``--batch-size`` tensors, already on ``--device``; the timed run is
  ``ImageEmbedder.embed_batch`` over them (which waits for the vectors on the host): the
  ceiling, what the model costs with nothing else to do.
* **loader (decode X)**, one per ``--decode`` value: ``pipeline.load_images`` into a freshly
  emptied database: worker start and warm-up, find, hash, look up, decode + preprocess
  (``cpu``: Pillow in ``--workers`` DataLoader processes; ``gpu``: headers in the workers,
  JPEG decode + resize on the device), embed, binary COPY per batch in the writer thread,
  index build. Wall clock from the call to its return.

``--repeat-to N`` copies the folder's JPEGs into a temporary folder until there are at least
N files, each copy made distinct by a JPEG comment segment (same pixels, other bytes: the
loader keys images by content, so plain copies or links would be loaded once).

Prints img/s of each, the ratio to the model alone (goal >= 0.85x: "met" only when every
interleaved round reaches it, "missed" when none does, else "not shown"), each loader's stage
split (seconds starting up, hashing, decoding (summed over workers), decoding on the device,
waiting for decoded batches, embedding, copying, building the index), and the seconds this
script took to import torch and load the model (what ``pgvision load`` pays before its
``startup`` stage, which counts it). Machines here are shared and noisy: compare ratios from
one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import (
    REPO,
    add_server_args,
    bench_database,
    connect,
    interleaved,
    machine,
    median,
    print_machine,
    print_table,
    round_ratios,
    spread,
    verdict,
    write_results,
)

sys.path.insert(0, str(REPO / "loader"))


def repeat_jpegs(files: list[Path], target: int, into: Path) -> Path:
    """Copies of the JPEGs ``files`` in ``into`` until there are >= ``target``, each distinct.

    Copy ``k`` of a file gets a JPEG comment segment (``FF FE``, after the SOI marker)
    holding ``k``: the pixels are the same, the SHA-256 differs.
    """
    jpegs = [f for f in files if f.read_bytes()[:2] == b"\xff\xd8"]
    if not jpegs:
        sys.exit("--repeat-to needs JPEG files in --folder")
    n = 0
    while n < target:
        for f in jpegs:
            data = f.read_bytes()
            comment = f"pgvision-bench copy {n}".encode()
            segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
            (into / f"{n:06d}_{f.name}").write_bytes(data[:2] + segment + data[2:])
            n += 1
            if n >= target:
                break
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", type=Path, default=REPO.parent / "shared" / "data" / "imagenet_samples",
                    help="images to load (default ../shared/data/imagenet_samples)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N files (default all)")
    ap.add_argument("--repeat-to", type=int, default=None, metavar="N",
                    help="copy the folder's JPEGs (made distinct) into a temp folder until >= N files")
    ap.add_argument("--model", default="efficientnet-lite0", help="model name (default efficientnet-lite0)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where the model runs (default cpu)")
    ap.add_argument("--decode", default="auto",
                    help="comma-separated loader decoders to compare: auto, cpu, gpu (default auto)")
    ap.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    ap.add_argument("--workers", type=int, default=1, help="loader decode processes (default 1)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for both (default: all cores)")
    add_server_args(ap)
    args = ap.parse_args()
    if not args.folder.exists():
        sys.exit(f"{args.folder} is absent: pass --folder with some images")
    decodes = [d.strip() for d in args.decode.split(",") if d.strip()]

    t_import = time.perf_counter()
    import torch

    from pgvision.ingest.decode_gpu import DecodeUnavailable, choose_decoder
    from pgvision.ingest.images import decode_image, find_images
    from pgvision.load_images import load_images
    from pgvision.models import load_image_model

    torch.set_num_threads(args.threads)
    embedder = load_image_model(args.model, device=args.device)
    model_loading = time.perf_counter() - t_import
    for d in decodes:
        try:
            choose_decoder(d, embedder.device, embedder.spec.preprocessing)
        except (ValueError, DecodeUnavailable) as exc:  # --decode gpu without CUDA: one line
            sys.exit(f"--decode {d}: {exc}")

    tmp = None
    folder = args.folder
    if args.repeat_to:
        tmp = Path(tempfile.mkdtemp(prefix="pgvision-bench-loader-"))
        folder = repeat_jpegs(find_images([args.folder], limit=args.limit), args.repeat_to, tmp)
    try:
        limit = None if args.repeat_to else args.limit
        files = find_images([folder], limit=limit)
        draft = embedder.spec.preprocessing.get("resize")
        tensors = [embedder.transform(decode_image(f.read_bytes(), draft_size=draft).image) for f in files]
        batches = [torch.stack(tensors[i : i + args.batch_size]).to(embedder.device)
                   for i in range(0, len(tensors), args.batch_size)]
        del tensors
        embedder.warm_up(args.batch_size)
        embedder.embed_batch(batches[0])  # warm-up (allocator, oneDNN/cuDNN kernels)

        with bench_database("loader", args.data_dir) as url, connect(url) as conn:
            info = machine(conn)
            print_machine(info)
            summaries: dict[str, list] = {f"loader (decode {d})": [] for d in decodes}

            def model_alone():
                for b in batches:
                    embedder.embed_batch(b)

            def loader(decode):
                def run():
                    s = load_images(conn, [folder], embedder, batch_size=args.batch_size, workers=args.workers,
                                    limit=limit, progress=False, decode=decode)
                    assert s.loaded == len(files), s.format()
                    summaries[f"loader (decode {decode})"].append(s)
                return run

            def reset(name):
                if name.startswith("loader"):
                    conn.execute("TRUNCATE pgvision.image_embeddings, pgvision.images, pgvision.models CASCADE")

            methods = {"model alone": model_alone, **{f"loader (decode {d})": loader(d) for d in decodes}}
            times = interleaved(methods, args.reps, before=reset)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    device = torch.cuda.get_device_name() if embedder.device.type == "cuda" else "cpu"
    where = folder if not args.repeat_to else f"{args.folder} repeated"
    report(args, info, device, where, len(files), times, summaries, model_loading)


def report(args, info: dict, device: str, where, n: int, times: dict[str, list[float]],
           summaries: dict[str, list], model_loading: float) -> None:
    """Print the tables (ratios by round, stage split, steady state) and write the results."""
    rate = {k: n / median(v) for k, v in times.items()}
    ratio = {k: rate[k] / rate["model alone"] for k in times}
    stages = {k: {st: median([s.seconds[st] for s in v]) for st in v[0].seconds} for k, v in summaries.items()}
    print(f"\n{n} images from {where}, model {args.model} "
          f"on {device}, batch {args.batch_size}, torch threads {args.threads}, loader workers {args.workers}, "
          f"{args.reps} reps (medians)")
    rounds = {k: round_ratios(times, k, "model alone") for k in times if k != "model alone"}
    print_table(["method", "seconds", "img/s", "vs model alone (medians)", "by round: median (min-max)",
                 ">= 0.85x"],
                [[k, median(times[k]), rate[k], ratio[k], spread(rounds[k]) if k in rounds else None,
                  verdict(rounds[k], 0.85) if k in rounds else None] for k in times])
    names = list(stages)
    all_stages = list(dict.fromkeys(st for v in stages.values() for st in v))
    print_table(["stage"] + names, [[st] + [stages[k].get(st, float("nan")) for k in names] for st in all_stages],
                title="loader stage split, seconds (medians; decode is summed over worker processes and overlaps "
                      "embed; copy runs in the writer thread)")
    print(f"\nimport torch + load the model (once here; in `pgvision load` part of startup): {model_loading:.1f} s")
    # Steady state: the loader's rate without its fixed costs (startup, hash, index build),
    # which do not grow with the number of images but dominate a short run on a fast GPU.
    steady = {k: n / max(1e-9, st["total"] - st["startup"] - st["hash"] - st["index"]) for k, st in stages.items()}
    for k in names:
        print(f"{k} / model alone: {ratio[k]:.2f}x (goal >= 0.85x); without startup, hash and index: "
              f"{steady[k] / rate['model alone']:.2f}x ({steady[k]:.0f} img/s)")
    write_results("bench_loader", {"machine": info, "device": device,
                                   "args": {k: str(v) for k, v in vars(args).items()},
                                   "images": n, "seconds": times, "img_per_s": rate, "ratio": ratio,
                                   "stages": stages, "model_loading_s": model_loading, "ratio_by_round": rounds,
                                   "steady_img_per_s": steady})


if __name__ == "__main__":
    main()
