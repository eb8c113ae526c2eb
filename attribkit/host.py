"""The plugin host: built-in method families and installed plugins, loaded lazily.

Built-in families are plugin modules registered exactly like third-party
plugins. Third-party plugins come from the ``attribkit`` entry-point group and
are loaded one at a time: a plugin that fails to import, whose hook raises, or
whose specs are invalid is unregistered, its half-registered methods dropped,
and the failure recorded; the remaining plugins still load.

Environment variables:
    ``ATTRIBKIT_STRICT_PLUGINS=1``  turn every plugin failure into a :class:`PluginError`.
    ``ATTRIBKIT_DISABLE_PLUGINS=a,b``  skip the named plugins (entry-point or built-in names).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import threading
from typing import Any

import pluggy

from attribkit import hookspecs
from attribkit.errors import PluginError
from attribkit.registry import MethodSpec, MetricSpec, Registry

ENTRY_POINT_GROUP = "attribkit"
BUILTIN_PLUGINS = (
    "attribkit.families.gradient",
    "attribkit.families.cam",
    "attribkit.families.baseline",
    "attribkit.families.perturbation",
    "attribkit.bench.builtin_metrics",
)


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One plugin as seen by the host.

    ``status`` is ``loaded``, ``failed`` or ``disabled``; ``error`` says why a
    plugin failed.
    """

    name: str
    distribution: str
    version: str
    builtin: bool
    status: str
    methods: tuple[str, ...] = ()
    error: str = ""
    metrics: tuple[str, ...] = ()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _disabled() -> set[str]:
    raw = os.environ.get("ATTRIBKIT_DISABLE_PLUGINS", "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def _own_version() -> str:
    try:
        return importlib.metadata.version("attribkit")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class Host:
    """Owns the pluggy manager, the method registry and the per-plugin records."""

    def __init__(self, *, builtins: bool = True, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager("attribkit")
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry(MethodSpec)
        self.metrics = Registry(MetricSpec)
        self.plugins: list[PluginInfo] = []
        self.strict = _flag("ATTRIBKIT_STRICT_PLUGINS")
        self._disabled = _disabled()
        if builtins:
            version = _own_version()
            for module_name in BUILTIN_PLUGINS:
                if self._skip(module_name, "attribkit", version, builtin=True):
                    continue
                # A broken built-in is a bug in attribkit itself: let it raise.
                self.add_plugin(importlib.import_module(module_name), module_name,
                                distribution="attribkit", version=version, builtin=True,
                                strict=True)
        if entry_points:
            for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
                self._load_entry_point(ep)

    def _skip(self, name: str, dist: str, version: str, *, builtin: bool) -> bool:
        if name not in self._disabled:
            return False
        self.plugins.append(PluginInfo(name, dist, version, builtin, "disabled"))
        return True

    def _load_entry_point(self, ep: importlib.metadata.EntryPoint) -> None:
        dist = ep.dist.name if ep.dist is not None else "unknown"
        version = ep.dist.version if ep.dist is not None else "unknown"
        if self._skip(ep.name, dist, version, builtin=False):
            return
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure is recorded
            self._fail(ep.name, dist, version, exc, strict=self.strict)
            return
        self.add_plugin(plugin, ep.name, distribution=dist, version=version, builtin=False,
                        strict=self.strict)

    def add_plugin(self, plugin: Any, name: str, *, distribution: str = "unknown",
                   version: str = "unknown", builtin: bool = False,
                   strict: bool | None = None) -> PluginInfo:
        """Register ``plugin`` under ``name`` and collect its methods.

        On failure the plugin is unregistered, its methods are removed and a
        ``failed`` :class:`PluginInfo` is returned (or :class:`PluginError`
        raised when ``strict``).
        """
        strict = self.strict if strict is None else strict
        registered: dict[str, list[str]] = {"register_methods": [], "register_metrics": []}

        def registrar(hook: str, registry: Registry):
            def register(spec: Any) -> None:
                spec = dataclasses.replace(spec, plugin=name)
                registry.add(spec)
                registered[hook].append(spec.name)
            return register

        try:
            self.pm.register(plugin, name=name)
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            for hook, registry in (("register_methods", self.registry),
                                   ("register_metrics", self.metrics)):
                caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
                caller(register=registrar(hook, registry))
        except Exception as exc:  # noqa: BLE001 - any plugin error is recorded
            self.registry.remove_plugin(name)
            self.metrics.remove_plugin(name)
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            return self._fail(name, distribution, version, exc, strict=strict, builtin=builtin)
        info = PluginInfo(name, distribution, version, builtin, "loaded",
                          tuple(registered["register_methods"]),
                          metrics=tuple(registered["register_metrics"]))
        self.plugins.append(info)
        return info

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and its methods (tests use this to clean up)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.registry.remove_plugin(name)
        self.metrics.remove_plugin(name)
        self.plugins = [p for p in self.plugins if p.name != name]

    def _fail(self, name: str, dist: str, version: str, exc: BaseException, *,
              strict: bool, builtin: bool = False) -> PluginInfo:
        message = f"{type(exc).__name__}: {exc}"
        if strict:
            raise PluginError(
                f"plugin {name!r} (distribution {dist} {version}) failed: {message}"
            ) from exc
        info = PluginInfo(name, dist, version, builtin, "failed", error=message)
        self.plugins.append(info)
        return info

    @property
    def failures(self) -> list[PluginInfo]:
        """The plugins that failed to load."""
        return [p for p in self.plugins if p.status == "failed"]


_host: Host | None = None
_lock = threading.Lock()


def get_host() -> Host:
    """The process-wide host, created (and plugins loaded) on first use."""
    global _host
    with _lock:
        if _host is None:
            _host = Host()
        return _host


def reset_host() -> None:
    """Forget the current host; the next :func:`get_host` reloads every plugin."""
    global _host
    with _lock:
        _host = None
