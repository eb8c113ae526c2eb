"""Built-in plugin: layer-wise relevance propagation (rules, composites, canonizers).

Kernels in :mod:`attribkit.torch.lrp`.
"""

from __future__ import annotations

from attribkit.hookspecs import hookimpl


@hookimpl
def register_methods(register):
    """Register this family's methods."""
