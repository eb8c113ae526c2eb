"""Channel-last <-> channel-first, for arrays crossing the framework protocol."""

from __future__ import annotations

import numpy as np

from attribkit.errors import InvalidOptionError

LAYOUTS = ("NHWC", "NCHW")


def check_layout(layout: str) -> str:
    """``layout`` if it is ``"NHWC"`` or ``"NCHW"``, else an ``InvalidOptionError``."""
    if layout not in LAYOUTS:
        raise InvalidOptionError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    return layout


def channels_first(array: np.ndarray, layout: str) -> np.ndarray:
    """A 4-D ``array`` in ``layout`` as ``(B, C, H, W)``; other ranks unchanged."""
    return array.transpose(0, 3, 1, 2) if layout == "NHWC" and array.ndim == 4 else array


def to_model_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """A 4-D channel-first ``array`` in the model's ``layout``; other ranks unchanged."""
    return array.transpose(0, 2, 3, 1) if layout == "NHWC" and array.ndim == 4 else array
