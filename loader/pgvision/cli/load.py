"""``pgvision load`` (image folders) and ``pgvision load-vectors`` (vectors computed elsewhere).

Parses options and reports; the work is in :mod:`pgvision.load_images` (images: needs the
``images`` extra) and :mod:`pgvision.load_vectors` (vectors: the core install is enough).
"""

from __future__ import annotations

import os
import time

import click

from pgvision.cli.common import open_database, run_guarded
from pgvision.cli.options import build_embedder, collection_option, database_url_option, index_option, model_options

CPUS = os.cpu_count() or 1
#: Default decode processes: half the cores (at most 8). Measured with bench/bench_loader.py
#: on 2 cores (100 photos, efficientnet-lite0, 2 torch threads): 1 worker 0.87x the model
#: alone, 2 workers 0.82x (they take CPU from the model and cost more to start).
DEFAULT_WORKERS = min(8, max(1, CPUS // 2))

@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@model_options
@click.option("--batch-size", type=click.IntRange(1, 4096), default=32, show_default=True,
              help="Images per model call and per database transaction.")
@click.option("--workers", type=click.IntRange(0, 64), default=DEFAULT_WORKERS, show_default=True,
              help="Processes that decode and preprocess images (0: in the main process) "
              "[default: half the cores, at most 8].")
@click.option("--threads", type=click.IntRange(1, 256), default=None,
              help=f"Threads the model uses (torch.set_num_threads) [default: torch's, here {CPUS}].")
@click.option("--decode", type=click.Choice(["auto", "cpu", "gpu"]), default="auto", show_default=True,
              help="Where JPEGs are decoded and resized: gpu = on the model's CUDA device (nvJPEG; "
              "other formats and JPEGs it refuses still on the CPU), cpu = Pillow in the workers; "
              "auto = cpu, on every device, until GPU decoding has been shown on a real GPU to give "
              "the same embeddings as the CPU path.")
@click.option("--label-from", type=click.Choice(["parent-dir", "none"]), default="parent-dir", show_default=True,
              help="parent-dir: an image's label is its folder's name; none: no label.")
@click.option("--limit", type=click.IntRange(1), default=None, metavar="N",
              help="Only the first N image files found (sorted by path) [default: all].")
@index_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, no per-file skip lines; the summary only.")
@collection_option
@database_url_option
@run_guarded
def load(paths, model, weights, output, dims, metric, name, device, batch_size, workers, threads, decode,
         label_from, limit, index, quiet, collection, database_url):
    """Embed the images under PATHS and store them for search; rerun to resume.

    Finds jpg/jpeg/png/webp/bmp/pgm/tiff files recursively; an image is keyed by the SHA-256
    of its bytes, so files already loaded with this model are skipped without decoding, and
    a rerun after an interruption loads only the rest. Unusable files (empty, truncated, not
    an image, decompression bomb: over 89 megapixels or more elongated than 100:1) are
    skipped and counted by reason; so are symbolic link loops, broken links, anything that
    is not a regular file (FIFO, device) and files over 256 MiB (env PGVISION_MAX_FILE_BYTES
    sets the limit in bytes). No image file at all is an error. At the end: a summary and
    the seconds spent starting up, hashing, decoding, embedding and copying.

    \b
    Example:
      pgvision load ./imagenet_samples
      pgvision load ./photos --model resnet50 --weights resnet50.pth --batch-size 64
      pgvision load ./photos --model torchscript:my.pt --dims 512 --metric cosine
      pgvision load ./photos --device cuda --decode gpu --batch-size 256 --workers 4
      pgvision load ./acme_photos --collection acme
    """
    started = time.perf_counter()
    from pgvision.ingest.decode_gpu import check_decode_option

    check_decode_option(decode, device)  # before the model loads: fail in a second
    from pgvision.load_images import load_images
    from pgvision.text import display

    embedder = build_embedder(model, weights, output, dims, metric, name, device, threads)
    with open_database(database_url) as conn:

        def on_skip(path, reason, detail):
            if not quiet:
                from tqdm import tqdm

                tqdm.write(f"skipped {display(path)}: {reason}" + (f" ({display(detail)})" if detail else ""),
                           file=click.get_text_stream("stderr"))

        summary = load_images(
            conn,
            paths,
            embedder,
            batch_size=batch_size,
            workers=workers,
            label_from=label_from,
            limit=limit,
            build_index=index,
            progress=not quiet,
            on_skip=on_skip,
            decode=decode,
            startup_seconds=time.perf_counter() - started,
            collection=collection,
        )
    click.echo(summary.format())


@click.command("load-vectors")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--model", "model", required=True, metavar="NAME",
              help="Name to register the vectors' model under (e.g. squeezenet1_1-analyticdb).")
@click.option("--metric", type=click.Choice(["cosine", "l2", "inner_product"]), default="cosine", show_default=True,
              help="Distance the vectors are compared with.")
@click.option("--normalize/--no-normalize", default=None,
              help="L2-normalise before storing [default: yes for cosine, no otherwise].")
@click.option("--format", "fmt", type=click.Choice(["auto", "npy", "analyticdb"]), default="auto", show_default=True,
              help="auto: .npy is NumPy, anything else the AnalyticDB text format id|class|{v1,...}.")
@click.option("--batch-size", type=click.IntRange(1, 1_000_000), default=5000, show_default=True,
              help="Rows per database transaction.")
@index_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar; the summary only.")
@collection_option
@database_url_option
@run_guarded
def load_vectors(file, model, metric, normalize, fmt, batch_size, index, quiet, collection, database_url):
    """Store vectors computed elsewhere: a .npy file or the AnalyticDB tutorial's text.

    FILE.npy is an (N, D) array; FILE.ids.txt, FILE.labels.txt and FILE.uris.txt beside it
    (one line per row) are read when present. A text file holds id|class|{v1,v2,...} lines.
    Rerunning with the same file adds nothing.

    \b
    Example:
      pgvision load-vectors features.npy --model my-features --metric cosine
      pgvision load-vectors cifar_squeezenet.txt --model squeezenet1_1-analyticdb --metric l2
      pgvision load-vectors acme.npy --model my-features --collection acme
    """
    from pgvision.ingest.vector_files import read_vectors
    from pgvision.load_vectors import load_vectors as run_load_vectors
    from pgvision.registry import ModelSpec

    vector_set = read_vectors(file, fmt)
    normalized = (metric == "cosine") if normalize is None else normalize
    spec = ModelSpec(
        name=model,
        kind="image",
        dims=int(vector_set.vectors.shape[1]),
        metric=metric,
        normalized=normalized,
        preprocessing={"source": "load-vectors", "file": os.path.basename(file)},
    )
    with open_database(database_url) as conn:
        summary = run_load_vectors(conn, vector_set, spec, batch_size=batch_size, build_index=index, progress=not quiet,
                                   collection=collection)
    click.echo(summary.format())
