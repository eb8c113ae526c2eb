"""Old module paths that keep working for one release after a move, with a warning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_module(old: str, *new: str, removed_in: str = "0.2") -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for the stub left at ``old``: each attribute is
    looked up in the ``new`` modules in order, with a ``DeprecationWarning`` that names
    the new home; ``old`` goes away in attribkit ``removed_in``."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for module_name in new:
            module = importlib.import_module(module_name)
            if hasattr(module, name):
                warnings.warn(f"{old}.{name} moved to {module_name}.{name}; the old path is removed in "
                              f"attribkit {removed_in}", DeprecationWarning, stacklevel=2)
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to {', '.join(new)})")

    return __getattr__
