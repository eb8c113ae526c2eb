"""A PyTorch module seen through the framework protocol: the reference implementation.

PyTorch models take attribkit's fast path (:mod:`attribkit.torch`); :class:`TorchModel` is
the same model behind :class:`~attribkit.backends.FrameworkModel`, the way a JAX or Keras
backend serves theirs. The tests run the framework-free kernels through it against the
PyTorch kernels, and a plugin author can read it as a worked example (``docs/frameworks.md``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from attribkit.backends.layout import channels_first, check_layout, to_model_layout
from attribkit.backends.protocol import LayerGradients
from attribkit.torch.capture import LayerCapture
from attribkit.torch.guard import model_guard
from attribkit.torch.layers import resolve_layer


class TorchModel:
    """``module`` as a :class:`~attribkit.backends.FrameworkModel`; ``layout="NHWC"`` takes
    channel-last batches (permuted to the module's channel-first input inside)."""

    framework = "torch"

    def __init__(self, module: nn.Module, layout: str = "NCHW") -> None:
        self.module = module
        self.layout = check_layout(layout)

    def _input(self, x: np.ndarray, grad: bool = False) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(grad)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x.permute(0, 3, 1, 2) if self.layout == "NHWC" and x.ndim == 4 else x)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The module's scores for ``x`` (no gradient)."""
        with model_guard(self.module, exclusive=False), torch.no_grad():
            return self._forward(self._input(x)).numpy()

    def input_gradients(self, x: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ``∂ Σ_b scores[b, classes[b]] / ∂x`` by autograd."""
        with model_guard(self.module, exclusive=False), torch.enable_grad():
            inputs = self._input(x, grad=True)
            scores = self._forward(inputs)
            (grad,) = torch.autograd.grad(_picked(scores, classes).sum(), inputs)
        return scores.detach().numpy(), grad.numpy()

    def resolve_layer(self, layer: Any, x: np.ndarray) -> str:
        """A dotted module name, or for ``None`` the last layer with a spatial output on ``x``."""
        with model_guard(self.module, exclusive=False):
            return resolve_layer(self.module, layer, self._model_input(x))[1]

    def layer_gradients(self, x: np.ndarray, layer: str, classes: np.ndarray | None) -> LayerGradients:
        """Activations of ``layer`` and their gradients (read by a call-scoped hook)."""
        module = self.module.get_submodule(layer)
        with model_guard(self.module, exclusive=False), torch.enable_grad(), \
                LayerCapture(module, layer, mode="leaf") as capture:
            scores = capture.run(self.module, self._model_input(x))
            acts = capture.output
            (grads,) = torch.autograd.grad(_picked(scores, classes).sum(), acts)
        return LayerGradients(scores.detach().numpy(), self._out(acts.detach()), self._out(grads))

    def layer_activations(self, x: np.ndarray, layer: str) -> LayerGradients:
        """Scores and the activations of ``layer`` in one forward."""
        module = self.module.get_submodule(layer)
        with model_guard(self.module, exclusive=False), torch.no_grad(), \
                LayerCapture(module, layer) as capture:
            scores = capture.run(self.module, self._model_input(x))
        return LayerGradients(scores.numpy(), self._out(capture.output))

    def _model_input(self, x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(channels_first(x, self.layout)))

    def _out(self, activations: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(to_model_layout(activations.numpy(), self.layout))


def _picked(scores: torch.Tensor, classes: np.ndarray | None) -> torch.Tensor:
    """``scores[b, classes[b]]``, the row's top class where ``classes`` is ``None`` (a class out
    of range clamped: attribkit raises for it from the scores)."""
    index = scores.argmax(-1) if classes is None else torch.from_numpy(classes).clamp(max=scores.shape[1] - 1)
    return scores.gather(1, index[:, None])[:, 0]
