"""Option groups the commands share, and the objects they describe.

``cli`` modules take their options from here (no command module imports another):
the database URLs, the image model options (:func:`model_options`, :func:`build_embedder`),
the face model options (:func:`face_model_options`, :func:`build_pipeline`), the search
options, and the number types that refuse what PostgreSQL or the code would take wrongly.
"""

from __future__ import annotations

import math

import click

database_url_option = click.option(
    "--database-url",
    envvar="DATABASE_URL",
    metavar="URL",
    help="PostgreSQL (with pgvector >= 0.8) to use, e.g. postgresql://user:pw@host/db. "
    "[env: DATABASE_URL; default: the embedded server]",
)

read_url_option = click.option(
    "--read-url",
    envvar="PGVISION_READ_URL",
    metavar="URL",
    help="Server(s) for this read, e.g. a hot-standby replica or a multi-host URL "
    "(host=a,b&target_session_attrs=prefer-standby&load_balance_hosts=random). "
    "[env: PGVISION_READ_URL; default: --database-url]",
)


collection_option = click.option(
    "--collection",
    default="default",
    show_default=True,
    metavar="NAME",
    help="Collection (tenant) the rows go into; created when absent if you own the schema, else it must be "
    "granted to your role (pgvision db user create NAME --collection NAME). See docs/collections.md.",
)


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf``.

    Python's ``float()`` accepts ``"nan"`` and ``"inf"``, and click's range check compares
    with ``<`` / ``>``, which NaN never fails: ``--target-recall nan`` or ``--threshold nan``
    would get past the option and into the code (PostgreSQL orders NaN above every number,
    so ``distance <= 'NaN'`` is true: the SQL functions refuse such a threshold, and the
    CLI now refuses it before any work). Every float option of the CLI uses this type.
    """

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return super().convert(number, param, ctx)


#: An ``image_id``/``face_id`` argument: PostgreSQL ``bigint`` (one-line error past its range).
BIGINT_ID = click.IntRange(1, 2**63 - 1)


def model_options(func):
    """``--model``, ``--weights``, ``--output``, ``--dims``, ``--metric``, ``--name``, ``--device``."""
    options = [
        click.option(
            "--model",
            "model",
            default="efficientnet-lite0",
            show_default=True,
            metavar="NAME",
            help="efficientnet-lite0 (offline ImageNet weights, 1280-d), any torchvision "
            "classification model (squeezenet1_1, resnet50, ...), or torchscript:PATH.",
        ),
        click.option(
            "--weights",
            type=click.Path(exists=True, dir_okay=False),
            metavar="FILE",
            help="Local weights (state_dict .pth) instead of the model's default ones "
            "(torchvision's are downloaded into the torch cache when online).",
        ),
        click.option(
            "--output",
            type=click.Choice(["features", "logits"]),
            default="features",
            show_default=True,
            help="features: pooled features before the classifier; logits: the class scores "
            "(registered as NAME-logits).",
        ),
        click.option("--dims", type=click.IntRange(1, 16000), metavar="D",
                     help="Output size of a torchscript:PATH model (required for it)."),
        click.option("--metric", type=click.Choice(["cosine", "l2", "inner_product"]),
                     help="Distance of a torchscript:PATH model (required for it); the others use cosine."),
        click.option("--name", metavar="NAME",
                     help="Register the model under this name [default: derived from --model and --output]."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
                     help="Where the model runs; auto = cuda when available."),
    ]
    return _apply(func, options)


def build_embedder(model, weights, output, dims, metric, name, device, threads=None):
    """The :class:`pgvision.models.embed.ImageEmbedder` the model options describe."""
    import torch

    from pgvision.models import load_image_model

    if threads:
        torch.set_num_threads(threads)
    return load_image_model(model, weights=weights, output=output, dims=dims, metric=metric, name=name, device=device)



#: A PostgreSQL ``integer`` (past it, "integer out of range" would not name the option).
SQL_INT = click.IntRange(-(2**31), 2**31 - 1)


def search_options(func):
    # -k and --ef-search are checked by pgvision._check_query (one line naming the limits)
    options = [
        click.option("-k", "k", type=SQL_INT, default=10, show_default=True, help="Rows wanted (1..1000)."),
        click.option("--label", metavar="LABEL", help="Only images with this label [default: all]."),
        click.option("--ef-search", type=SQL_INT, default=None, metavar="N",
                     help="HNSW candidate list size (recall/speed) [default: the model's, 40]."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table."),
    ]
    return _apply(func, options)


def face_model_options(func):
    """``--model``, ``--weights``, ``--detector``, ``--upsample``, ``--min-face-px``, ``--device``, ``--crop``."""
    options = [
        click.option(
            "--model",
            type=click.Choice(["dlib", "facenet"]),
            default="dlib",
            show_default=True,
            help="Face model: dlib (ResNet, 128-d, L2) or facenet (InceptionResnetV1, 512-d, cosine; needs --weights).",
        ),
        click.option(
            "--weights",
            type=click.Path(exists=True, dir_okay=False),
            metavar="FILE",
            help="facenet only: InceptionResnetV1 state_dict in facenet-pytorch key names "
            "(e.g. facenet_inception_resnet_v1_casia_webface_20180408-102900.pt).",
        ),
        click.option(
            "--detector",
            type=click.Choice(["hog", "cnn"]),
            default="hog",
            show_default=True,
            help="dlib face detector: hog (fast, frontal) or cnn (MMOD, finds more, several times slower on CPU).",
        ),
        click.option(
            "--upsample",
            type=click.IntRange(0, 3),
            default=1,
            show_default=True,
            help="Times the photo is upsampled 2x before detection "
            "(each halves the smallest face found, doubles the time).",
        ),
        click.option(
            "--min-face-px",
            type=click.IntRange(8, 10000),
            default=40,
            show_default=True,
            help="Faces narrower than this many pixels are counted as too small and not stored.",
        ),
        click.option(
            "--device",
            type=click.Choice(["auto", "cpu", "cuda"]),
            default="auto",
            show_default=True,
            help="Where facenet runs; auto = cuda when available (dlib runs on the CPU).",
        ),
        click.option(
            "--crop",
            type=click.Choice(["detect", "whole"]),
            default="detect",
            show_default=True,
            help="detect: find faces with --detector (a small face-sized photo where none is found is taken "
            "whole); whole: every photo is one pre-cropped face (ID photos, exported crops), no detector.",
        ),
    ]
    return _apply(func, options)


def build_pipeline(model, weights, detector, upsample, min_face_px, device, crop="detect"):
    from pgvision.faces.detect import FaceDetector
    from pgvision.faces.embed import load_face_model
    from pgvision.faces.pipeline import FacePipeline

    return FacePipeline(load_face_model(model, weights, device), FaceDetector(detector, upsample, min_face_px, crop))


quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bar; print only the summary.")

index_option = click.option(
    "--index/--no-index", default=True, show_default=True,
    help="Build the model's ANN index after loading if it is missing.",
)


def _apply(func, options: list):
    """``func`` decorated with ``options``, the first one listed first in ``--help``."""
    for option in reversed(options):
        func = option(func)
    return func
