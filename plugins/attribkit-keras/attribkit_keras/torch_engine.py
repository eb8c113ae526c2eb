"""Gradients of a Keras model on the PyTorch backend: autograd on ``model(x, training=False)``.

Only the input (and a layer's output) are differentiated (``torch.autograd.grad`` with
explicit inputs), so no ``.grad`` is left on the model's variables. The input asks for a
gradient in the layer methods too, so that a model with frozen weights still has a graph
through the layer.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import torch

from attribkit_keras.layers import Capture, capture, find
from attribkit_keras.picking import check_classes, check_scores


def _picked_sum(scores: torch.Tensor, classes: np.ndarray | None) -> torch.Tensor:
    check_classes(classes, scores)
    index = scores.argmax(-1) if classes is None else torch.as_tensor(classes, device=scores.device)
    return scores.gather(1, index[:, None]).sum()


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


class TorchEngine:
    """The model called eagerly (nothing to cache)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def _input(self, x: np.ndarray, grad: bool) -> torch.Tensor:
        return keras.ops.convert_to_tensor(np.ascontiguousarray(x)).detach().requires_grad_(grad)

    def _forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return check_scores(self.model(inputs, training=False))

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The model's scores (no graph)."""
        with torch.no_grad():
            return _numpy(self._forward(self._input(x, False)))

    def input_gradients(self, x: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and the input gradient of the picked scores."""
        with torch.enable_grad():
            inputs = self._input(x, True)
            scores = self._forward(inputs)
            (grad,) = torch.autograd.grad(_picked_sum(scores, classes), inputs)
        return _numpy(scores), _numpy(grad)

    def layer_activations(self, x: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores and the layer's output in one forward."""
        with torch.no_grad(), capture(find(self.model, path), Capture(path)) as seen:
            scores = self._forward(self._input(x, False))
            return _numpy(scores), _numpy(seen.single())

    def layer_gradients(self, x: np.ndarray, path: str,
                        classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores, the layer's output and the gradient of the picked scores with respect to it."""
        with torch.enable_grad(), capture(find(self.model, path), Capture(path)) as seen:
            scores = self._forward(self._input(x, True))
            acts = seen.single()
            (grads,) = torch.autograd.grad(_picked_sum(scores, classes), acts)
        return _numpy(scores), _numpy(acts), _numpy(grads)
