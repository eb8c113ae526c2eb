"""Gradients of a Keras model on the JAX backend: ``jax.value_and_grad`` over
``model.stateless_call(trainable, non_trainable, x, training=False)``, jitted once per model
(and layer) and reused by every later call (:func:`attribkit_keras.model.wrap` keeps one
engine per model). The variables are read afresh at each call and passed as arguments, so
a model trained between two calls is explained with its new weights; nothing is written
back (the call is stateless).

A layer's gradient is that with respect to a zero ``delta`` added to the layer's output
(:mod:`attribkit_keras.layers`), which equals the gradient with respect to the output.
"""

from __future__ import annotations

import inspect
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from attribkit_keras.layers import Capture, capture, find
from attribkit_keras.picking import check_classes, check_scores


def _picked_sum(scores: Any, classes: Any, top: bool) -> Any:
    index = jnp.argmax(scores, -1) if top else classes
    return jnp.take_along_axis(scores, index[:, None], axis=1).sum()


class JaxEngine:
    """The jitted functions of one model (held by a weak reference: the engine does not keep
    the model alive)."""

    def __init__(self, model: Any) -> None:
        self._model = weakref.ref(model)
        self._jitted: dict[Any, Any] = {}
        self._shapes: dict[Any, Any] = {}
        self._captures: dict[str, Capture] = {}

    @property
    def model(self) -> Any:
        return self._model()

    def _state(self) -> tuple[list[Any], list[Any]]:
        model = self.model
        return ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables])

    def _forward(self, trainable: Any, non_trainable: Any, x: Any) -> Any:
        model = self.model
        # as Layer.__call__ does: training= only to a call() that takes it (a subclass's may not)
        kwargs = {"training": False} if _takes_training(model) else {}
        scores, _ = model.stateless_call(trainable, non_trainable, x, **kwargs)
        return check_scores(scores)

    def _capture(self, path: str) -> Any:
        """The layer's output recorder; one per layer, as the jitted functions that read it."""
        seen = self._captures.setdefault(path, Capture(path))
        return capture(find(self.model, path), seen)

    def _function(self, key: Any, build: Any) -> Any:
        if key not in self._jitted:
            self._jitted[key] = build()
        return self._jitted[key]

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The model's scores (one jitted forward)."""
        forward = self._function("scores", lambda: jax.jit(self._forward))
        return np.array(forward(*self._state(), x))

    def input_gradients(self, x: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and the input gradient of the picked scores."""
        def loss(x, trainable, non_trainable, classes, top):
            scores = self._forward(trainable, non_trainable, x)
            return _picked_sum(scores, classes, top), scores

        step = self._function("input", lambda: jax.jit(jax.value_and_grad(loss, has_aux=True),
                                                       static_argnames="top"))
        (_, scores), grad = step(x, *self._state(), _classes(classes, len(x)), top=classes is None)
        check_classes(classes, scores)  # the classes are traced: checked on the result
        return np.array(scores), np.array(grad)

    def layer_activations(self, x: np.ndarray, path: str) -> tuple[np.ndarray, np.ndarray]:
        """Scores and the layer's output (one jitted forward)."""
        with self._capture(path) as seen:
            def forward(x, trainable, non_trainable):
                seen.reset()
                scores = self._forward(trainable, non_trainable, x)
                return scores, seen.single()

            run = self._function(("activations", path), lambda: jax.jit(forward))
            scores, acts = run(x, *self._state())
        return np.array(scores), np.array(acts)

    def layer_gradients(self, x: np.ndarray, path: str,
                        classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scores, the layer's output and the gradient of the picked scores with respect to it."""
        with self._capture(path) as seen:
            def loss(delta, x, trainable, non_trainable, classes, top):
                seen.reset(delta)
                scores = self._forward(trainable, non_trainable, x)
                return _picked_sum(scores, classes, top), (scores, seen.single())

            def activations(x, trainable, non_trainable):
                seen.reset()
                self._forward(trainable, non_trainable, x)
                return seen.single()

            state = self._state()
            key = (path, x.shape, x.dtype.str)
            if key not in self._shapes:  # the output's shape and dtype: traced once, not run
                self._shapes[key] = jax.eval_shape(activations, x, *state)
            shape = self._shapes[key]
            step = self._function(("layer", path), lambda: jax.jit(jax.value_and_grad(loss, has_aux=True),
                                                                   static_argnames="top"))
            (_, (scores, acts)), grads = step(jnp.zeros(shape.shape, shape.dtype), x, *state,
                                              _classes(classes, len(x)), top=classes is None)
            check_classes(classes, scores)
        return np.array(scores), np.array(acts), np.array(grads)


def _takes_training(model: Any) -> bool:
    parameters = inspect.signature(model.call).parameters.values()
    return any(p.name == "training" or p.kind is p.VAR_KEYWORD for p in parameters)


def _classes(classes: np.ndarray | None, rows: int) -> np.ndarray:
    """The classes as a traced argument (zeros, unused, when the top class is taken)."""
    return np.zeros(rows, np.int32) if classes is None else classes.astype(np.int32)
