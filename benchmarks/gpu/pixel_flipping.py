"""Section ``pixel_flipping``: attribkit's pixel flipping (``ak.evaluate``) against
Quantus 0.6 and against the floor (every perturbed image's forward, without the
perturbation work), on a tiny CNN and a linear model, as
``benchmarks/test_metrics_speed.py`` does. Quantus runs with ``np.trapz`` restored
(gone in NumPy 2, called by its per-sample AUC)."""

from __future__ import annotations

import importlib.util

from benchmarks.gpu.config import Config
from benchmarks.gpu.measure import ATTRIBKIT, FLOOR, PEER, Impl, Row, compare
from benchmarks.shared import (
    attribkit_pixel_flipping,
    numpy_trapz,
    pixel_flipping_floor,
    pixel_flipping_setup,
    quantus_pixel_flipping,
)

SECTION = "pixel_flipping"
MODELS = ("cnn", "linear")


def run(config: Config) -> list[Row]:
    """Rows of pixel flipping (one pixel per step, per-image AUC) on each of :data:`MODELS`."""
    rows: list[Row] = []
    has_quantus = importlib.util.find_spec("quantus") is not None
    n, size, rows_per_call = config.pf_images, config.pf_size, config.pf_rows
    for kind in MODELS:
        model, x, y, a = pixel_flipping_setup(kind, n, size, config.device)

        def quantus(model=model, x=x, y=y, a=a) -> object:
            with numpy_trapz():
                return quantus_pixel_flipping(model, x, y, a)

        impls = [Impl(FLOOR, "forwards", lambda model=model, x=x: pixel_flipping_floor(model, x, rows_per_call)),
                 Impl(ATTRIBKIT, "attribkit",
                      lambda model=model, x=x, y=y, a=a: attribkit_pixel_flipping(model, x, y, a, rows_per_call)),
                 Impl(PEER, "quantus", quantus, None) if has_quantus
                 else Impl(PEER, "quantus", None, reason="quantus is not installed")]
        rows += compare(SECTION, f"pixel_flipping {kind} {n}x{size}x{size}", impls, config)
    return rows
