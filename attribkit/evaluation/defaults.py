"""Options whose defaults scale with the image, and the checks of user-given values.

A metric's cost in forwards must not grow with the image: the per-pixel curves take
:data:`DEFAULT_STEPS` steps (``features_in_step=None``), the patch metrics an
:data:`GRID` x :data:`GRID` tiling (``patch_size=None``), and pixel counts (top-k's
``k``, faithfulness correlation's ``subset_size``) scale Quantus's value at 224 x 224
with the pixel count. A value out of range for the image is an
:class:`~attribkit.errors.InvalidOptionError` naming the option (also a ``ValueError``).
"""

from __future__ import annotations

import math
import numbers

from attribkit.errors import InvalidOptionError

#: steps of the per-pixel curves when ``features_in_step`` is None (Quantus's default is
#: 1 pixel per step: ``H*W`` model calls per image, 4,096 at 64x64)
DEFAULT_STEPS = 32


def step_size(features_in_step: int | None, n_pixels: int) -> int:
    """``features_in_step``, or (None) the step that makes :data:`DEFAULT_STEPS` steps."""
    if features_in_step is None:
        return max(1, math.ceil(n_pixels / DEFAULT_STEPS))
    return positive_int("features_in_step", features_in_step)


def positive_int(option: str, value: object, most: int | None = None, where: str = "") -> int:
    """``value`` as an int in ``1..most``, or :class:`~attribkit.errors.InvalidOptionError`
    naming ``option`` (and ``where``: the image size it was checked against)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or int(value) != value:
        raise InvalidOptionError(f"option {option!r} must be a whole number, got {value!r}")
    if value < 1 or (most is not None and value > most):
        bounds = f"1..{most}" if most is not None else ">= 1"
        raise InvalidOptionError(f"option {option!r} must be in {bounds}{where}, got {value}")
    return int(value)


#: patches per side of the default tiling (``patch_size=None``): 8 x 8 = 64 patches at any size
GRID = 8


def patch_side(patch_size: int | None, h: int, w: int, option: str = "patch_size") -> int:
    """``patch_size``, or (None) the side that tiles ``h x w`` into about :data:`GRID` x
    :data:`GRID` patches (``ceil(min(h, w) / GRID)``: 4 px at 32x32, 28 px at 224x224),
    so that the patch metrics cost the same number of forwards at any image size."""
    if patch_size is None:
        return max(1, math.ceil(min(h, w) / GRID))
    return positive_int(option, patch_size)


def scaled_count(value: int | None, n_pixels: int, at_224: int, option: str, *, below: bool = False) -> int:
    """A pixel count option: ``value``, or (None) ``at_224`` scaled by the image's pixel
    count (Quantus's default at 224 x 224). Must be in ``1..n_pixels`` (``..n_pixels - 1``
    with ``below``), else :class:`~attribkit.errors.InvalidOptionError`."""
    most = n_pixels - 1 if below else n_pixels
    if value is None:
        return min(most, max(1, round(n_pixels * at_224 / 224**2)))
    return positive_int(option, value, most, f" for images of {n_pixels} pixels")
