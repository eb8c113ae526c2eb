"""The framework-free kernels: written once against :class:`~attribkit.backends.FrameworkModel`.

Each kernel is ``kernel(fm, x, target, layer, **options) -> (B, ...) torch.Tensor``
channel-first, where ``x`` is the chunk in the model's layout (NumPy) and ``target`` its
:class:`~attribkit.backends.targets.Classes` (given, or read from the first forward). The formulas are the PyTorch kernels' own functions
(:func:`~attribkit.torch.integrated.quadrature`, :func:`~attribkit.torch.noise.noisy_copies`,
the CAM weightings of :mod:`attribkit.torch.cam`), applied to the arrays the framework gives
back, so a JAX or Keras model gets the same numbers as its PyTorch twin. Torch here is only
array arithmetic on the CPU; the model's forward and backward run in its own framework.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from attribkit.backends.layout import channels_first, to_model_layout
from attribkit.backends.protocol import FrameworkModel
from attribkit.backends.targets import Classes
from attribkit.errors import InvalidOptionError
from attribkit.torch.cam import GRADIENT_WEIGHTINGS, first_component, weighted_map
from attribkit.torch.gradients import reduce_channels
from attribkit.torch.integrated import check_rows, check_steps, quadrature
from attribkit.torch.noise import NoiseTunnel, noisy_copies

#: rows per framework call when a kernel multiplies the batch and no internal_batch_size is given
DEFAULT_ROWS = 256


def _tensor(array: np.ndarray, layout: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(channels_first(np.asarray(array), layout)))


def _gradients(fm: FrameworkModel, x: np.ndarray, classes: np.ndarray, rows: int | None) -> np.ndarray:
    """``∂ score / ∂x`` of every row of ``x``, ``rows`` rows per framework call."""
    step = rows or len(x)
    return np.concatenate([fm.input_gradients(x[i:i + step], classes[i:i + step])[1]
                           for i in range(0, len(x), step)])


def _one_pass(fm: FrameworkModel, x: np.ndarray, target: Classes) -> np.ndarray:
    scores, grad = fm.input_gradients(x, target.classes)
    target.observe(scores)
    return grad


def saliency(fm: FrameworkModel, x: np.ndarray, target: Classes, layer: Any = None, *,
             abs: bool, take_max: bool) -> torch.Tensor:
    """Simonyan et al. 2014 (arXiv:1312.6034): ``∂S/∂x``, optionally ``|·|`` and the max over channels."""
    grad = _one_pass(fm, x, target)
    return reduce_channels(_tensor(grad, fm.layout), abs=abs, take_max=take_max)


def input_x_gradient(fm: FrameworkModel, x: np.ndarray, target: Classes, layer: Any = None, *,
                     abs: bool, take_max: bool) -> torch.Tensor:
    """Shrikumar et al. 2016 (arXiv:1605.01713): ``x ⊙ ∂S/∂x``."""
    grad = _one_pass(fm, x, target)
    return reduce_channels(_tensor(x * grad, fm.layout), abs=abs, take_max=take_max)


def integrated_gradients(fm: FrameworkModel, x: np.ndarray, target: Classes, layer: Any = None, *,
                         n_steps: int, integration_method: str, baseline: Any,
                         internal_batch_size: int | None, abs: bool, take_max: bool) -> torch.Tensor:
    """Sundararajan et al. 2017 (arXiv:1703.01365): ``(x − x') ⊙ Σ_k w_k ∂S/∂x(x' + α_k (x − x'))``
    with the nodes and weights of :func:`~attribkit.torch.integrated.quadrature`."""
    check_steps(integration_method, n_steps)
    check_rows(internal_batch_size)
    classes = target.resolve(fm, x)
    start = _baseline(baseline, x)
    alphas, weights = (t.numpy() for t in quadrature(integration_method, n_steps))
    shape = (1, -1, *[1] * (x.ndim - 1))
    delta = x - start
    points = (start[:, None] + alphas.astype(x.dtype).reshape(shape) * delta[:, None]).reshape(-1, *x.shape[1:])
    grads = _gradients(fm, points, np.repeat(classes, n_steps), internal_batch_size or DEFAULT_ROWS)
    summed = (grads.reshape(len(x), n_steps, *x.shape[1:]) * weights.reshape(shape)).sum(1)
    return reduce_channels(_tensor((delta * summed).astype(x.dtype), fm.layout), abs=abs, take_max=take_max)


def _baseline(baseline: Any, x: np.ndarray) -> np.ndarray:
    """``None`` (zeros), a number, or an array of one input's shape in the model's layout."""
    if baseline is None:
        return np.zeros_like(x)
    if isinstance(baseline, numbers.Real) and not isinstance(baseline, bool):
        return np.full_like(x, float(baseline))
    array = np.asarray(baseline, dtype=x.dtype)
    if array.shape not in (x.shape[1:], (1, *x.shape[1:])):
        raise InvalidOptionError(f"baseline must have the shape of one input in the model's layout, "
                                 f"{tuple(x.shape[1:])}; got {tuple(array.shape)}")
    return np.broadcast_to(array.reshape(1, *x.shape[1:]), x.shape)


def smoothgrad(fm: FrameworkModel, x: np.ndarray, target: Classes, layer: Any = None, *,
               n_samples: int, stdev: float, seed: int | None, abs: bool, take_max: bool,
               rows: int | None = None) -> torch.Tensor:
    """Smilkov et al. 2017 (arXiv:1706.03825): saliency averaged over ``n_samples`` noisy copies,
    the noise drawn as the PyTorch kernel draws it (same ``seed``, same noise: for the whole
    batch at once, which is why this kernel takes the batch whole and calls the framework on
    ``rows`` rows at a time)."""
    tunnel = NoiseTunnel("smoothgrad", n_samples, stdev, seed)
    classes = target.resolve(fm, x)
    copies = noisy_copies(_tensor(x, fm.layout), tunnel).numpy()
    grads = _gradients(fm, to_model_layout(copies, fm.layout), np.repeat(classes, n_samples),
                       rows or DEFAULT_ROWS)
    maps = reduce_channels(_tensor(grads, fm.layout), abs=abs, take_max=take_max)
    return maps.reshape(len(x), n_samples, *maps.shape[1:]).mean(1)


smoothgrad.whole_batch = True  # explain_framework passes the batch whole, with rows=batch_size


def gradient_cam(name: str):
    """The gradient CAM ``name`` (``gradcam``, ``gradcam_pp``, ``hirescam``, ``xgradcam``,
    ``layercam``): ``ReLU(Σ_k α_k ⊙ A_k)`` with the weighting of :mod:`attribkit.torch.cam`."""
    weighting = GRADIENT_WEIGHTINGS[name]

    def kernel(fm: FrameworkModel, x: np.ndarray, target: Classes, layer: str, *,
               relu: bool, **layout: Any) -> torch.Tensor:
        _refuse_layout_options(layout)
        found = fm.layer_gradients(x, layer, target.classes)
        target.observe(found.scores)
        acts = _spatial(found.activations, fm.layout, layer)
        grads = _spatial(found.gradients, fm.layout, layer)
        return weighted_map(acts, weighting(acts, grads), relu=relu)

    kernel.__name__ = kernel.__qualname__ = name
    kernel.__doc__ = f"{name} on a framework model's layer (formula: docs/cam.md)."
    return kernel


def eigencam(fm: FrameworkModel, x: np.ndarray, target: Classes, layer: str, *,
             relu: bool, **layout: Any) -> torch.Tensor:
    """Muhammad & Yeasin 2020 (arXiv:2008.00299): the activations projected on their first
    principal component (class-agnostic)."""
    _refuse_layout_options(layout)
    found = fm.layer_activations(x, layer)
    target.observe(found.scores)
    projection = first_component(_spatial(found.activations, fm.layout, layer))
    return projection.clamp(min=0) if relu else projection


def _spatial(array: np.ndarray, layout: str, layer: str) -> torch.Tensor:
    if np.ndim(array) != 4:
        from attribkit.errors import LayerError

        raise LayerError(f"layer {layer!r} gives shape {tuple(np.shape(array))}; CAM methods need a "
                         "spatial (B, h, w, C) or (B, C, h, w) output: name a convolution or pooling layer")
    return _tensor(array, layout)


def _refuse_layout_options(options: dict[str, Any]) -> None:
    given = {k: v for k, v in options.items() if v is not None}
    if given:
        raise InvalidOptionError(f"{', '.join(given)} apply to PyTorch token layers; a framework model's "
                                 "layer is read in the model's layout")


gradcam = gradient_cam("gradcam")
gradcam_pp = gradient_cam("gradcam_pp")
hirescam = gradient_cam("hirescam")
xgradcam = gradient_cam("xgradcam")
layercam = gradient_cam("layercam")
