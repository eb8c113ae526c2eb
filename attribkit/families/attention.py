"""Built-in plugin: the attention family (vision transformers).

Methods that read a transformer's attention probabilities for the call, without
editing the model; kernels in :mod:`attribkit.torch.attention`.
"""

from __future__ import annotations

from attribkit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    """Register this family's methods."""
