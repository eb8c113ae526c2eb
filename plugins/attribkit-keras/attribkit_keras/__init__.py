"""attribkit-keras: Keras 3 models behind ``ak.explain``, ``ak.as_predict`` and ``ak.evaluate``.

The entry point ``keras = "attribkit_keras"`` (group ``attribkit``) registers this module. Its
``register_backends`` hook registers the ``keras`` backend: :func:`claims` recognises a Keras
model by the modules of its class hierarchy (importing nothing), and the factory
:func:`attribkit_keras.model.wrap` (imported on first use, with Keras) wraps it as an
:class:`attribkit.backends.FrameworkModel`. Gradients run on the Keras backend the model
lives on: JAX (``jax.value_and_grad`` over ``stateless_call``) or PyTorch (autograd).
"""

from __future__ import annotations

from typing import Any

from attribkit.backends import BackendSpec
from attribkit.hookspecs import hookimpl

__all__ = ["INSTALL_HINT", "claims", "register_backends"]

INSTALL_HINT = "pip install 'attribkit[keras]'"


def claims(model: Any) -> bool:
    """Whether ``model`` is a Keras 3 model: a ``keras.Model`` (Sequential, functional or a
    subclass defined anywhere), read from the modules of its class's MRO; imports nothing."""
    return any(cls.__module__.startswith("keras.") and cls.__name__ in ("Model", "Functional", "Sequential")
               for cls in type(model).__mro__)


@hookimpl
def register_backends(register):
    """Register the ``keras`` backend."""
    register(BackendSpec(
        name="keras", claims=claims, factory="attribkit_keras.model:wrap", requires=("keras",),
        extra=INSTALL_HINT,
        description="Keras 3 models (Sequential, functional, subclassed) on the JAX or PyTorch backend"))
