"""Reading a model's weights file (a ``state_dict`` saved with ``torch.save``)."""

from __future__ import annotations

import warnings

from pgvision.errors import ModelUnavailable
from pgvision.text import display


def load_state_dict_file(path, model: str) -> dict:
    """Read a ``state_dict`` saved with ``torch.save``, for ``model`` (named in errors).

    ``weights_only=True``: tensors and plain containers only, so a hostile file cannot run
    code while being read (a pickled object is refused, not unpickled).

    Raises:
        ModelUnavailable: not a PyTorch file (text, truncated, another format: torch raises
            UnpicklingError, RuntimeError, IndexError or EOFError by kind), or a file that
            holds something other than a dict of tensors (a nested checkpoint, a tensor).
    """
    import torch

    fix = "pass the .pth that torch.save(model.state_dict()) wrote"
    try:
        with warnings.catch_warnings():  # torch warns (two lines) about odd pickles before refusing them
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - every way a file can fail to be a checkpoint
        raise ModelUnavailable(
            f"weights file {display(path)} is not a PyTorch state_dict for {model} ({type(exc).__name__}): {fix}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        kind = type(state).__name__ if not isinstance(state, dict) else "dict of non-tensors (a checkpoint?)"
        raise ModelUnavailable(
            f"weights file {display(path)} holds a {kind}, not a state_dict of tensors for {model}: {fix}"
        )
    return state
