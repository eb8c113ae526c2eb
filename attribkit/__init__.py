"""attribkit: what a neural network looks at.

The public API is imported lazily, so ``import attribkit`` loads neither
torch nor any plugin::

    import attribkit as ak
    r = ak.explain(model, images, method="saliency")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "explain": "attribkit.api",
    "methods": "attribkit.api",
    "get_method": "attribkit.api",
    "plugins": "attribkit.api",
    "Attribution": "attribkit.result",
    "MethodSpec": "attribkit.registry",
    "hookimpl": "attribkit.hookspecs",
    "errors": "attribkit.errors",
}
_EXPORTS.update({name: "attribkit.errors" for name in (
    "AttribkitError", "UnknownMethodError", "InvalidOptionError", "InputError",
    "TargetError", "LayerError", "GradientModeError", "PluginError",
    "MissingDependencyError", "DuplicateMethodError", "SpecError",
)})

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'attribkit' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if name == "errors" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
