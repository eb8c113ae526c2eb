"""Activation maximisation: the input a unit responds to most, by gradient ascent.

For a unit with activation ``a(x)`` (one channel of a layer, or a class
logit) activation maximisation solves (Erhan et al. 2009, "Visualizing
Higher-Layer Features of a Deep Network")::

    x* = argmax_x  a(x) - lambda * R(x)

by gradient ascent on the pixels, here with Adam (:mod:`~attribkit.features.adam`). The objectives, one per
row ``i`` of the optimised batch:

* channel ``c_i`` of a layer: ``a_i = mean_{y,x} A[i, c_i, y, x]``, the mean of
  the channel's activation map;
* class ``k_i``: ``a_i = S_{k_i}(x_i)``, the unnormalised logit -- the class
  model visualisation of Simonyan et al. 2014 ("Deep Inside Convolutional
  Networks"), which maximises the score, not the softmax, so that the image
  is pushed towards the class rather than away from the others;
* DeepDream (Mordvintsev et al. 2015, "Inceptionism"): from a given image,
  ``a_i = mean(A[i] ** 2)``, the layer's squared activation norm, amplifying
  whatever the layer already sees.

All rows are optimised together as one batch. The loss is the **sum** over
rows, ``L = -sum_i (a_i - lambda R(x_i))``, so row ``i``'s gradient is that
of its own objective only, and Adam's update is element-wise: the batch gives
each row exactly what optimising it alone would, in one forward and backward.

Regularisers (the ones that make the pictures readable, Olah et al. 2017,
"Feature Visualization", Distill):

* L2 decay (Simonyan et al. 2014): ``R(x) = mean(((x - mean) / std) ** 2)``,
  the mean squared model input, i.e. a pull towards the dataset's mean colour
  (mid-grey ``0.5`` when no ``mean``/``std`` are given);
* jitter: before every forward each row is rolled (``torch.roll``) by its own
  random shift in ``[-jitter, jitter]`` pixels, so the image must work at
  every small offset (transformation robustness);
* blur: every ``blur_every`` steps the image is smoothed by a Gaussian of width
  ``blur_sigma`` pixels (Yosinski et al. 2015), damping high-frequency noise;
* ``param="fft"``: the spatially decorrelated Fourier parametrisation of
  :mod:`~attribkit.features.parametrize` (Olah et al. 2017).

The model is left exactly as it was: it runs under
:func:`~attribkit.torch.guard.model_guard` (eval mode, hooks removed in
``finally``), and gradients are taken with ``torch.autograd.grad`` with
respect to the image parameters only, so no ``.grad`` is written to the
model's parameters. For a layer objective the forward stops right after the
layer (the layers above it are never computed).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from attribkit.errors import InputError, InvalidOptionError, LayerError, TargetError
from attribkit.features.adam import Adam
from attribkit.features.parametrize import PARAMETRIZATIONS
from attribkit.features.transforms import random_shifts, roll_rows, row_generator
from attribkit.images import normalize
from attribkit.torch.capture import LayerCapture, tensor_output
from attribkit.torch.checks import as_image_batch
from attribkit.torch.guard import model_guard
from attribkit.torch.layers import resolve_layer

Indices = int | Sequence[int] | torch.Tensor
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclasses.dataclass
class Visualization:
    """What :func:`maximize_activation` returns.

    Attributes:
        images: ``(N, C, H, W)`` in ``[0, 1]`` (display space, on the CPU), row
            ``i`` optimised for ``targets[i]``.
        objective: ``"channel"``, ``"class"`` or ``"norm"`` (DeepDream).
        targets: the channel or class of each row (``None`` for ``"norm"`` rows).
        layer: the layer's dotted name (``None`` for class objectives).
        start_scores: ``(N,)`` the objective ``a_i`` of the starting images.
        scores: ``(N,)`` the objective of the returned images (no jitter).
        history: ``(steps, N)`` the objective at each step (on the jittered input).
        meta: the settings used (steps, lr, regularisers, seed, ...).
    """

    images: torch.Tensor
    objective: str
    targets: list[int | None]
    layer: str | None
    start_scores: torch.Tensor
    scores: torch.Tensor
    history: torch.Tensor
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    def labels(self) -> list[str]:
        """One short label per row: ``"channel 3"``, ``"class 7"``, ``"dream 0"``."""
        if self.objective == "norm":
            return [f"dream {i}" for i in range(len(self.targets))]
        return [f"{self.objective} {t}" for t in self.targets]

    def plot(self, **options: Any) -> Any:
        """The images as a grid: see :func:`~attribkit.features.plots.plot_visualization`."""
        from attribkit.features.plots import plot_visualization

        return plot_visualization(self, **options)


def _check_number(name: str, value: Any, *, integer: bool = False, low: float = 0.0,
                  strict: bool = False) -> None:
    kind = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kind) and not isinstance(value, bool)
    ok = ok and (value > low if strict else value >= low)
    if not ok:
        what = "an integer" if integer else "a number"
        raise InvalidOptionError(f"{name} must be {what} {'>' if strict else '>='} {low}, got {value!r}")


def _indices(value: Indices, what: str, count: int, where: str) -> list[int]:
    """``value`` as a list of ints in ``0..count-1``; a clear error naming the range otherwise."""
    items = value.reshape(-1).tolist() if isinstance(value, torch.Tensor) else (
        [value] if isinstance(value, numbers.Integral) else list(value))
    if not items:
        raise TargetError(f"no {what}s given")
    for item in items:
        if not isinstance(item, numbers.Integral) or isinstance(item, bool):
            raise TargetError(f"{what}s must be integers, got {item!r}")
        if not 0 <= item < count:
            raise TargetError(f"{what} {item} is out of range: {where} has {count} {what}s "
                              f"(valid: 0..{count - 1})")
    return [int(i) for i in items]


def _input_channels(model: nn.Module) -> int:
    """The ``in_channels`` of the model's first convolution (3 when it has none)."""
    first = next((m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    return int(first.in_channels) if first is not None else 3


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int]:
    size = (64, 64) if image_size is None else (
        (image_size, image_size) if isinstance(image_size, numbers.Integral) else tuple(image_size))
    if len(size) != 2 or not all(isinstance(s, numbers.Integral) and s > 0 for s in size):
        raise InvalidOptionError(f"image_size must be an int or (H, W), got {image_size!r}")
    return int(size[0]), int(size[1])


def _start_images(start: Any, image_size: Any) -> torch.Tensor:
    x = as_image_batch(start, "start").detach().float()
    if image_size is not None and _size(image_size) != tuple(x.shape[-2:]):
        raise InputError(f"image_size {image_size!r} does not match the start images "
                         f"{tuple(x.shape[-2:])}; leave image_size out")
    if float(x.min()) < -1e-6 or float(x.max()) > 1 + 1e-6:
        raise InputError("start images must be pictures in [0, 1], not normalised model "
                         "inputs; use attribkit.denormalize and pass mean=/std= instead")
    return x


def _match_rows(x: torch.Tensor, rows: int | None) -> torch.Tensor:
    """One start image for every target row (a single image is repeated)."""
    if rows is None or len(x) == rows:
        return x
    if len(x) != 1:
        raise InputError(f"got {len(x)} start images for {rows} targets; give one, or one per target")
    return x.expand(rows, *x.shape[1:])


def _check_options(model: Any, param: str, steps: int, lr: float, jitter: int, blur_every: int,
                   blur_sigma: float, l2: float) -> None:
    if not isinstance(model, nn.Module):
        raise InputError(f"maximize_activation needs an nn.Module model, got {type(model).__name__}")
    if param not in PARAMETRIZATIONS:
        raise InvalidOptionError(f"param must be one of {', '.join(PARAMETRIZATIONS)}, got {param!r}")
    for name, value in (("steps", steps), ("jitter", jitter), ("blur_every", blur_every)):
        _check_number(name, value, integer=True)
    _check_number("lr", lr, strict=True)
    _check_number("blur_sigma", blur_sigma, strict=True)
    _check_number("l2", l2)


def maximize_activation(
    model: nn.Module,
    layer: nn.Module | str | None = None,
    channels: Indices | None = None,
    steps: int = 128,
    lr: float = 0.05,
    image_size: int | tuple[int, int] | None = None,
    *,
    classes: Indices | None = None,
    start: Any = None,
    param: str = "pixel",
    l2: float = 1e-3,
    jitter: int = 2,
    blur_every: int = 4,
    blur_sigma: float = 0.5,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    seed: int = 0,
) -> Visualization:
    """Images that maximise channels of a layer, class logits, or (DeepDream) a layer's norm.

    What is maximised, one batch row per target:

    * ``channels=[c_0, c_1, ...]`` (with ``layer``): row ``i`` maximises the mean
      activation of channel ``c_i``. ``channels=None`` (and no ``start``): every
      channel of the layer.
    * ``classes=[k_0, ...]`` (``layer`` and ``channels`` left out): row ``i``
      maximises the logit ``k_i`` (class model visualisation).
    * ``start=images`` without ``channels``/``classes``: DeepDream, one row per
      start image, maximising ``mean(A ** 2)`` of ``layer``. With ``channels`` or
      ``classes``, ``start`` (one image, or one per target) replaces the random
      start of those objectives.

    Args:
        model: an ``nn.Module`` taking ``(B, C, H, W)`` inputs; never modified.
        layer: a module, a dotted name, or ``None`` (the last spatial layer).
        channels: a channel index or a sequence of them (repeats allowed).
        steps: Adam steps.
        lr: Adam's learning rate (on pixels, or on the spectrum for ``param="fft"``).
        image_size: ``H`` or ``(H, W)`` of the images (default 64; taken from
            ``start`` when given).
        classes: a class index or a sequence of them; mutually exclusive with
            ``layer`` and ``channels``.
        start: starting pictures in ``[0, 1]``, ``(N, C, H, W)`` or ``(C, H, W)``.
        param: ``"pixel"`` or ``"fft"`` (see :mod:`~attribkit.features.parametrize`).
        l2: weight ``lambda`` of the decay ``mean(((x - mean) / std) ** 2)``.
        jitter: maximal random shift in pixels per step (0: none).
        blur_every: blur every this many steps (0: never).
        blur_sigma: the Gaussian's standard deviation in pixels.
        mean, std: the model's input normalisation; the model sees
            ``(x - mean) / std`` while ``x`` stays a displayable picture in ``[0, 1]``.
        seed: the random start and the jitter of a row come from ``(seed, its
            target)`` only, so the same channel gives the same image whatever
            other channels are optimised with it.

    Returns:
        a :class:`Visualization` (``images``, ``start_scores``, ``scores``,
        ``history``, ...); ``.plot()`` draws the grid.

    Raises:
        TargetError: a channel or class index out of range (the message names the
            valid range).
        LayerError: the layer is not in the model, or not called by its forward.
        InvalidOptionError, InputError: bad settings or start images.
    """
    _check_options(model, param, steps, lr, jitter, blur_every, blur_sigma, l2)
    if classes is not None and (layer is not None or channels is not None):
        raise InvalidOptionError("classes= maximises the model's output logits: leave layer= and "
                                 "channels= out (or use channels= to maximise a layer)")
    objective = "class" if classes is not None else (
        "norm" if channels is None and start is not None else "channel")
    parameters = next(model.parameters(), None)
    device = parameters.device if parameters is not None else torch.device("cpu")
    starts = _start_images(start, image_size) if start is not None else None
    shape = (tuple(starts.shape[1:]) if starts is not None
             else (_input_channels(model), *_size(image_size)))
    normalized = mean is not None or std is not None
    in_mean = list(mean) if mean is not None else [0.0] * shape[0]
    in_std = list(std) if std is not None else [1.0] * shape[0]

    def to_model(x: torch.Tensor) -> torch.Tensor:
        return normalize(x, in_mean, in_std) if normalized else x

    with model_guard(model, exclusive=False), torch.enable_grad():
        probe = to_model(torch.full((1, *shape), 0.5, device=device))
        score_fn, targets, where = _objective(model, objective, layer, channels, classes, probe)
        if starts is not None:
            starts = _match_rows(starts, len(targets) if targets is not None else None).to(device)
        targets = targets if targets is not None else [None] * len(starts)
        kind = {"channel": "channel", "class": "class", "norm": "row"}[objective]
        generators = [row_generator(seed, kind, i if t is None else t) for i, t in enumerate(targets)]
        parametrization = PARAMETRIZATIONS[param]
        image = (parametrization.random(generators, shape, device) if starts is None
                 else parametrization.from_image(starts))
        target_index = torch.tensor([-1 if t is None else t for t in targets], device=device)

        def objective_of(x: torch.Tensor) -> torch.Tensor:
            return score_fn(to_model(x), target_index)

        def decay(x: torch.Tensor) -> torch.Tensor:
            centre = x.new_tensor(in_mean if mean is not None else [0.5] * shape[0]).view(1, -1, 1, 1)
            return (((x - centre) / x.new_tensor(in_std).view(1, -1, 1, 1)) ** 2).flatten(1).mean(1)

        with torch.no_grad():
            start_scores = objective_of(image.image())
        history = _ascend(image, objective_of, decay, generators, steps=steps, lr=lr, l2=l2,
                          jitter=jitter, blur_every=blur_every, blur_sigma=blur_sigma)
        with torch.no_grad():
            final = image.image()
            scores = objective_of(final)
    meta = dict(steps=steps, lr=lr, param=param, l2=l2, jitter=jitter, blur_every=blur_every,
                blur_sigma=blur_sigma, mean=mean, std=std, seed=seed, image_size=tuple(shape[1:]))
    return Visualization(images=final.detach().cpu(), objective=objective, targets=targets,
                         layer=where, start_scores=start_scores.cpu(), scores=scores.cpu(),
                         history=history.cpu(), meta=meta)


def _ascend(image: Any, objective_of: Callable[[torch.Tensor], torch.Tensor],
            decay: Callable[[torch.Tensor], torch.Tensor], generators: list[torch.Generator], *,
            steps: int, lr: float, l2: float, jitter: int, blur_every: int,
            blur_sigma: float) -> torch.Tensor:
    """The optimisation loop; returns the ``(steps, N)`` objective history.

    Each step: jitter every row, ``L = -sum_i (a_i - l2 * R(x_i))``, the gradient
    with respect to the image parameters only, an Adam step, the projection to
    valid pixels, and every ``blur_every`` steps a blur.
    """
    optimizer = Adam(image.param, lr)
    history = []
    for step in range(steps):
        x = image.image()
        score = objective_of(roll_rows(x, random_shifts(generators, jitter)))
        loss = -(score - l2 * decay(x)).sum()
        (grad,) = torch.autograd.grad(loss, [image.param])
        optimizer.step(grad)
        image.project()
        if blur_every and (step + 1) % blur_every == 0:
            image.blur(blur_sigma)
        history.append(score.detach())
    return torch.stack(history) if history else torch.empty(0, len(generators))


def _objective(model: nn.Module, objective: str, layer: Any, channels: Indices | None,
               classes: Indices | None, probe: torch.Tensor) -> tuple[ScoreFn, list[int] | None, str | None]:
    """``(score_fn, targets, layer name)``: ``score_fn(z, target_index) -> (B,)``.

    A probe forward validates the targets against the layer's channels or the
    model's outputs, and counts the layer's calls so the forward can stop after the last.
    """
    if objective == "class":
        with torch.no_grad():
            out = model(probe)
        if not isinstance(out, torch.Tensor) or out.ndim != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TargetError(f"classes= needs a model returning (B, classes) logits; it returned {shape}")
        targets = _indices(classes, "class", out.shape[1], "the model's output")

        def class_score(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            return model(z).gather(1, idx[:, None]).squeeze(1)

        return class_score, targets, None

    module, name = resolve_layer(model, layer, probe)
    capture = LayerCapture(module, repr(name), mode="graph", check=tensor_output(name))
    with capture, torch.no_grad():
        capture.run(model, probe)
    acts = capture.output
    if acts.ndim < 2:
        raise LayerError(f"layer {name!r} has output shape {tuple(acts.shape)}; activation "
                         "maximisation needs (B, C, ...) outputs")
    n_channels = acts.shape[1]
    capture.stop_after = capture.calls
    if objective == "norm":
        targets = None
    else:
        requested = range(n_channels) if channels is None else channels
        targets = _indices(requested, "channel", n_channels, f"layer {name!r}")

    def layer_score(z: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        with capture:
            capture.run(model, z)
        a = capture.output
        a = a.reshape(a.shape[0], a.shape[1], -1)
        if objective == "norm":
            return (a ** 2).flatten(1).mean(1)
        return a[torch.arange(len(a), device=a.device), idx].mean(1)

    return layer_score, targets, name
