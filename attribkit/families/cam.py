"""Built-in plugin: the CAM family."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl

KERNELS = "attribkit.torch.cam"


@hookimpl
def register_methods(register):
    """CAM-family methods are registered here (filled in by the kernels work)."""
