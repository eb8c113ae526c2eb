"""A Keras 3 model behind :class:`attribkit.backends.FrameworkModel`: :func:`wrap`.

Inputs and layer outputs are NumPy arrays in the model's layout (``"NHWC"`` for Keras'
default ``channels_last``, ``"NCHW"`` for a model whose layers say ``channels_first``). The
forward and backward run on the Keras backend the model lives on (fixed when Keras is
imported: ``KERAS_BACKEND``): JAX (:mod:`attribkit_keras.jax_engine`) or PyTorch
(:mod:`attribkit_keras.torch_engine`); always with ``training=False`` (BatchNorm's moving
statistics, no dropout).
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from attribkit.backends.protocol import LayerGradients
from attribkit.errors import InputError, MissingDependencyError

from attribkit_keras import INSTALL_HINT
from attribkit_keras.layers import _paths, resolve

#: the Keras backends the plugin computes gradients on
BACKENDS = ("jax", "torch")

#: model -> its engine (jitted functions on JAX); the engine holds the model weakly
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def wrap(model: Any) -> KerasModel:
    """``model`` (a built ``keras.Model``) as a :class:`KerasModel`."""
    return KerasModel(model)


def layout_of(model: Any) -> str:
    """``"NCHW"`` when the model's first layer with a ``data_format`` says ``channels_first``,
    ``"NHWC"`` when it says ``channels_last``; Keras' ``image_data_format()`` when none says."""
    for _, layer in _paths(model):
        data_format = getattr(layer, "data_format", None)
        if data_format in ("channels_first", "channels_last"):
            return "NCHW" if data_format == "channels_first" else "NHWC"
    return "NCHW" if keras.config.image_data_format() == "channels_first" else "NHWC"


def _engine(model: Any) -> Any:
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise MissingDependencyError(
            f"attribkit-keras computes gradients on Keras' jax and torch backends; this Keras runs on "
            f"{backend!r}: set KERAS_BACKEND=jax (or torch) before keras is imported ({INSTALL_HINT})")
    engine = _ENGINES.get(model)
    if engine is None:
        if backend == "jax":
            from attribkit_keras.jax_engine import JaxEngine as Engine
        else:
            from attribkit_keras.torch_engine import TorchEngine as Engine
        engine = _ENGINES[model] = Engine(model)
    return engine


class KerasModel:
    """A Keras 3 model seen through the framework protocol."""

    framework = "keras"

    def __init__(self, model: Any) -> None:
        if not isinstance(model, keras.Model):
            raise InputError(f"attribkit-keras wraps a keras.Model, got {type(model).__name__}")
        if not model.built:
            raise InputError(f"Keras model {model.name!r} is not built: call it once on a batch (or give "
                             "it a keras.Input) before explaining it")
        self.model = model
        self.layout = layout_of(model)
        self.engine = _engine(model)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The model's ``(B, K)`` scores for ``x`` (no gradient)."""
        return self.engine.scores(x)

    def input_gradients(self, x: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ``∂ Σ_b scores[b, classes[b]] / ∂x`` (``None``: each row's top class)."""
        return self.engine.input_gradients(x, classes)

    def resolve_layer(self, layer: Any, x: np.ndarray | None = None) -> str:
        """A layer's name (``"outer/inner"`` inside a nested model), or for ``None`` the last
        layer with a 4-D output (read from the built model: ``x`` is not needed); a
        :class:`~attribkit.errors.LayerError` listing the layers."""
        return resolve(self.model, layer)

    def layer_gradients(self, x: np.ndarray, layer: str, classes: np.ndarray | None) -> LayerGradients:
        """The layer's output and the gradient of the target scores with respect to it."""
        return LayerGradients(*self.engine.layer_gradients(x, layer, classes))

    def layer_activations(self, x: np.ndarray, layer: str) -> LayerGradients:
        """Scores and the layer's output from one forward."""
        return LayerGradients(*self.engine.layer_activations(x, layer))
