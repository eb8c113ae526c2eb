"""Real handwriting with known boxes: scikit-learn's digits on a cluttered canvas.

``sklearn.datasets.load_digits`` ships 1,797 real handwritten digits (8x8, 16
grey levels, from 43 writers) inside the package: nothing is downloaded. Each
image here is one digit, upscaled (bilinear) to ``digit`` pixels and placed at a
random position on a ``size`` x ``size`` canvas cluttered with *strokes*:
fragments (a random 4x4 window, so never a whole digit) of other digits, scaled
the same way, at random positions and contrasts, plus a little noise. The
digit's class is the label and its box the evidence mask, so localisation
metrics have ground truth on real data.

The first 1,400 digits feed the training images and the last 397 (other
samples, partly other writers) the test and benchmark images, so the model is
scored on digits it never saw. :func:`digits_model` trains the reference CNN of
:mod:`attribkit.bench.reference` on it, reproducibly, cached like the synthetic one
(the ``digits`` benchmark task, :mod:`attribkit.bench.tasks.digits`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attribkit.bench.training import Recipe, cached_model, config_key, fit_classifier

TRAIN_DIGITS = 1400  # load_digits rows 0..1399 for training, 1400.. for test / bench
CACHE_VERSION = 1


@dataclasses.dataclass
class DigitsData:
    images: np.ndarray  # (N, 3, H, W) float32 in [0, 1] (grey, repeated over 3 channels)
    labels: np.ndarray  # (N,) int64
    masks: np.ndarray  # (N, H, W) bool: the digit's box
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        from attribkit.errors import MissingDependencyError

        raise MissingDependencyError("the digits benchmark reads scikit-learn's handwritten digits, and "
                                     "scikit-learn is not installed: pip install 'attribkit[bench]'") from exc

    bunch = load_digits()
    return (torch.from_numpy(bunch.images.astype(np.float32) / 16.0),
            torch.from_numpy(bunch.target.astype(np.int64)))


def make_digits(n: int, *, size: int = 64, digit: int = 28, strokes: int = 4, split: str = "test",
                seed: int = 0) -> DigitsData:
    """``n`` cluttered canvases, all drawn from ``seed``; ``split`` picks the pool of
    digits (``"train"``: rows ``< 1400``, ``"test"``: the rest)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    pool_x, pool_y = _digits()
    if split == "train":
        pool_x, pool_y = pool_x[:TRAIN_DIGITS], pool_y[:TRAIN_DIGITS]
    else:
        pool_x, pool_y = pool_x[TRAIN_DIGITS:], pool_y[TRAIN_DIGITS:]
    gen = torch.Generator().manual_seed(seed)
    pick = torch.randint(len(pool_x), (n,), generator=gen)
    labels = pool_y[pick]
    glyphs = F.interpolate(pool_x[pick][:, None], size=(digit, digit), mode="bilinear",
                           align_corners=False).clamp(0, 1)  # (n, 1, d, d)
    canvas = 0.15 * torch.rand(n, 1, 1, 1, generator=gen) * torch.ones(n, 1, size, size)
    # strokes: 4x4 windows of other digits, scaled like the digit (half its side)
    frag = digit // 2
    for _ in range(strokes):
        other = torch.randint(len(pool_x), (n,), generator=gen)
        oy, ox = torch.randint(0, 5, (2, n), generator=gen)
        rows = (oy[:, None] + torch.arange(4))[:, :, None].expand(n, 4, 4)
        cols = (ox[:, None] + torch.arange(4))[:, None, :].expand(n, 4, 4)
        window = pool_x[other][torch.arange(n)[:, None, None], rows, cols]
        piece = F.interpolate(window[:, None], size=(frag, frag), mode="bilinear", align_corners=False)
        piece = piece * (0.4 + 0.5 * torch.rand(n, 1, 1, 1, generator=gen))
        py, px = torch.randint(0, size - frag + 1, (2, n), generator=gen)
        canvas = _paste(canvas, piece, py, px)
    y0, x0 = torch.randint(0, size - digit + 1, (2, n), generator=gen)
    canvas = _paste(canvas, glyphs, y0, x0)
    canvas = (canvas + 0.03 * torch.randn(canvas.shape, generator=gen)).clamp(0, 1)
    yy = torch.arange(size)[None, :, None]
    xx = torch.arange(size)[None, None, :]
    masks = ((yy >= y0[:, None, None]) & (yy < (y0 + digit)[:, None, None])
             & (xx >= x0[:, None, None]) & (xx < (x0 + digit)[:, None, None]))
    return DigitsData(canvas.expand(n, 3, size, size).contiguous().numpy(), labels.numpy(), masks.numpy())


def _paste(canvas: torch.Tensor, piece: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Max-blend ``(n, 1, p, p)`` pieces into ``(n, 1, S, S)`` canvases at per-image offsets."""
    n, _, s, _ = canvas.shape
    p = piece.shape[-1]
    layer = torch.zeros_like(canvas)
    rows = (top[:, None] + torch.arange(p))[:, :, None].expand(n, p, p)
    cols = (left[:, None] + torch.arange(p))[:, None, :].expand(n, p, p)
    layer[torch.arange(n)[:, None, None], 0, rows, cols] = piece[:, 0]
    return torch.maximum(canvas, layer)


@dataclasses.dataclass(frozen=True)
class DigitsTrainConfig(Recipe):
    """Everything that determines the digits model's weights (and its cache key): the
    shared :class:`~attribkit.bench.training.Recipe`, the canvas and digit sizes, the width."""

    size: int = 64
    digit: int = 28
    width: int = 32

    def key(self) -> str:
        """A hash of the config and :data:`CACHE_VERSION`."""
        return config_key(self, CACHE_VERSION)


def fit_digits(config: DigitsTrainConfig, *, log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """Train the reference CNN (10 classes) on :func:`make_digits` from scratch by
    :func:`~attribkit.bench.training.fit_classifier` (training canvases drawn from
    ``config.seed``, test canvases from ``config.seed + 10_000``)."""
    from attribkit.bench.reference import ReferenceCNN

    data = make_digits(config.n_train, size=config.size, digit=config.digit, split="train", seed=config.seed)
    test = make_digits(config.n_test, size=config.size, digit=config.digit, split="test",
                       seed=config.seed + 10_000)
    return fit_classifier(lambda: ReferenceCNN(10, config.width), data, test, config, channels_last=True, log=log)


def digits_model(config: DigitsTrainConfig = DigitsTrainConfig(), *,
                 log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """The digits model from ``$ATTRIBKIT_CACHE`` (``digits-<key>.pt`` + ``.json``), else
    trained by :func:`fit_digits` and cached; with its record."""
    from attribkit.bench.reference import ReferenceCNN

    def trained() -> tuple[nn.Module, dict]:
        if log:
            log(f"training the digits model ({config.n_train} images, {config.epochs} epochs; cached after)")
        return fit_digits(config, log=log)

    return cached_model(f"digits-{config.key()}", lambda: ReferenceCNN(10, config.width), trained)
