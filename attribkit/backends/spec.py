"""The registration of a framework: :class:`BackendSpec` and the host's list of them."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from typing import Any

from attribkit.errors import DuplicateMethodError, MissingDependencyError, PluginError, SpecError

#: a framework's top-level modules -> the install hint shown when a model of it comes without its plugin
KNOWN_FRAMEWORKS = {
    "jax": "pip install 'attribkit[jax]' ./plugins/attribkit-jax",
    "flax": "pip install 'attribkit[jax]' ./plugins/attribkit-jax",
    "keras": "pip install 'attribkit[keras]' ./plugins/attribkit-keras",
}


@dataclasses.dataclass(frozen=True)
class BackendSpec:
    """A framework that attribkit's methods can run on.

    Attributes:
        name: the framework's name (``"jax"``, ``"keras"``), also ``explain(backend=...)``.
        claims: ``claims(model) -> bool``: whether the model is one of this framework's. Cheap,
            and importing nothing: test ``type(model).__module__`` (the framework is imported
            already when the user holds one of its models).
        factory: ``wrap(model, **options) -> FrameworkModel``, a callable or ``"module:attr"``
            (imported on first use, so that ``import attribkit`` imports no framework).
        options: the backend's own ``explain`` keywords and their defaults (``params=`` for a
            JAX function ``f(params, x)``); they are taken out before the method's options
            are checked.
        requires: the modules the factory imports; one that is missing is a
            :class:`~attribkit.errors.MissingDependencyError` naming ``extra``.
        extra: how to install them (``"pip install 'attribkit[jax]'"``).
        description: one line for ``attribkit plugins``.
        plugin: the registering plugin (set by the host).
    """

    name: str
    claims: Callable[[Any], bool]
    factory: Callable[..., Any] | str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    requires: tuple[str, ...] = ()
    extra: str = ""
    description: str = ""
    plugin: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier() or self.name != self.name.lower():
            raise SpecError(f"backend name {self.name!r} must be a lower-case identifier")
        if not callable(self.claims):
            raise SpecError(f"backend {self.name!r}: claims must be a callable model -> bool")
        if not (callable(self.factory) or (isinstance(self.factory, str) and ":" in self.factory)):
            raise SpecError(f"backend {self.name!r}: factory must be a callable or a 'module:attribute' "
                            f"string, got {self.factory!r}")
        object.__setattr__(self, "options", dict(self.options))
        object.__setattr__(self, "requires", tuple(self.requires))

    def check_factory(self) -> None:
        """:class:`SpecError` when a ``"module:attr"`` factory's module cannot be found
        (located, not imported)."""
        from attribkit.registry import _module_exists

        if isinstance(self.factory, str) and not _module_exists(self.factory.partition(":")[0]):
            raise SpecError(f"backend {self.name!r}: factory {self.factory!r} names a module that "
                            "cannot be found")

    def wrap(self, model: Any, **options: Any) -> Any:
        """``model`` as a :class:`~attribkit.backends.protocol.FrameworkModel`."""
        for module in self.requires:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise MissingDependencyError(
                    f"the {self.name} backend needs {module!r}, which cannot be imported ({exc}); "
                    f"install it: {self.extra or 'pip install ' + module}") from exc
        factory = self.factory
        if isinstance(factory, str):
            module_name, _, attr = factory.partition(":")
            try:
                factory = getattr(importlib.import_module(module_name), attr)
            except ImportError as exc:
                raise MissingDependencyError(
                    f"backend {self.name!r} of plugin {self.plugin!r}: importing {module_name!r} failed: "
                    f"{exc}; install it: {self.extra or 'see the plugin'}") from exc
            except AttributeError as exc:
                raise PluginError(f"backend {self.name!r}: module {module_name!r} has no {attr!r}") from exc
        return factory(model, **options)


class BackendRegistry:
    """Name -> :class:`BackendSpec`, in registration order."""

    def __init__(self) -> None:
        self._specs: dict[str, BackendSpec] = {}

    def add(self, spec: BackendSpec) -> None:
        """Add ``spec``; a name already taken raises naming both plugins."""
        if not isinstance(spec, BackendSpec):
            raise SpecError(f"register() expects a BackendSpec, got {type(spec).__name__}")
        other = self._specs.get(spec.name)
        if other is not None:
            raise DuplicateMethodError(f"backend {spec.name!r} from plugin {spec.plugin!r} is already "
                                       f"registered by plugin {other.plugin!r}")
        self._specs[spec.name] = spec

    def remove_plugin(self, plugin: str) -> None:
        """Drop every backend that ``plugin`` registered."""
        self._specs = {k: s for k, s in self._specs.items() if s.plugin != plugin}

    def get(self, name: str) -> BackendSpec:
        """The backend called ``name``; unknown: an ``InvalidOptionError`` listing them."""
        from attribkit.errors import InvalidOptionError

        if name not in self._specs:
            raise InvalidOptionError(f"no backend {name!r}; registered: {', '.join(self._specs) or 'none'} "
                                     f"(framework plugins: {sorted(set(KNOWN_FRAMEWORKS.values()))[0]}, ...)")
        return self._specs[name]

    def claiming(self, model: Any) -> BackendSpec | None:
        """The first backend that claims ``model``, else ``None``."""
        for spec in self._specs.values():
            if spec.claims(model):
                return spec
        return None

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)


def unclaimed_framework(model: Any) -> str | None:
    """The install hint for a model of a known framework (by its classes' modules) that no
    backend claimed, else ``None``."""
    for cls in type(model).__mro__:  # a user's subclass lives in the user's module
        hint = KNOWN_FRAMEWORKS.get((cls.__module__ or "").partition(".")[0])
        if hint is not None:
            return hint
    return None
