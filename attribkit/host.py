"""The plugin host: built-in method families and installed plugins, loaded lazily.

Built-in families are plugin modules registered exactly like third-party
plugins. Third-party plugins come from the ``attribkit`` entry-point group and
are loaded one at a time: a plugin that fails to import, whose hook raises,
whose specs are invalid (a ``"module:attr"`` factory whose module cannot be
found included), or whose name is a built-in's or already taken by another
plugin is unregistered, its half-registered methods dropped, and the failure
recorded; the remaining plugins still load. ``SystemExit`` and
``KeyboardInterrupt`` raised by a plugin are recorded like any other error.

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
import traceback
from typing import Any

import pluggy

from attribkit import hookspecs
from attribkit.backends.spec import BackendRegistry
from attribkit.errors import PluginError
from attribkit.registry import MethodSpec, MetricSpec, Registry

ENTRY_POINT_GROUP = "attribkit"
BUILTIN_PLUGINS = (
    "attribkit.families.gradient",
    "attribkit.families.cam",
    "attribkit.families.attention",
    "attribkit.families.lrp",
    "attribkit.families.baseline",
    "attribkit.families.perturbation",
    "attribkit.evaluation.plugin",
)
# What a plugin may raise without taking the host down: everything but GeneratorExit.
_CAUGHT = (Exception, SystemExit, KeyboardInterrupt)


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """One plugin as seen by the host.

    ``status`` is ``loaded``, ``failed`` or ``disabled``. For a failed plugin
    ``error`` is one line (the exception type and the first line of its
    message) and ``detail`` the full message with the traceback.
    """

    name: str
    distribution: str
    version: str
    builtin: bool
    status: str
    methods: tuple[str, ...] = ()
    error: str = ""
    metrics: tuple[str, ...] = ()
    detail: str = ""
    backends: tuple[str, ...] = ()


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
        self.backends = BackendRegistry()
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
        conflict = self._name_conflict(ep.name, dist, version, builtin=False)
        if conflict is not None:  # refused before its module is imported
            self._fail(ep.name, dist, version, conflict, strict=self.strict)
            return
        try:
            plugin = ep.load()
        except _CAUGHT as exc:  # any import failure is recorded, sys.exit() included
            self._fail(ep.name, dist, version, exc, strict=self.strict)
            return
        self.add_plugin(plugin, ep.name, distribution=dist, version=version, builtin=False,
                        strict=self.strict)

    def add_plugin(self, plugin: Any, name: str, *, distribution: str = "unknown",
                   version: str = "unknown", builtin: bool = False,
                   strict: bool | None = None) -> PluginInfo:
        """Register ``plugin`` under ``name`` and collect its methods.

        ``name`` must not be a built-in plugin's (unless ``builtin``) nor one
        the host has already seen. On failure the plugin is unregistered, its
        methods are removed and a ``failed`` :class:`PluginInfo` is returned
        (or :class:`PluginError` raised when ``strict``).
        """
        strict = self.strict if strict is None else strict
        conflict = self._name_conflict(name, distribution, version, builtin=builtin)
        if conflict is not None:
            return self._fail(name, distribution, version, conflict, strict=strict, builtin=builtin)
        registered: dict[str, list[str]] = {"register_methods": [], "register_metrics": [],
                                            "register_backends": []}

        def registrar(hook: str, registry: Registry):
            def register(spec: Any) -> None:
                spec = dataclasses.replace(spec, plugin=name)
                spec.check_factory()
                registry.add(spec)
                registered[hook].append(spec.name)
            return register

        try:
            self.pm.register(plugin, name=name)
            others = [p for p in self.pm.get_plugins() if p is not plugin]
            for hook, registry in (("register_methods", self.registry),
                                   ("register_metrics", self.metrics),
                                   ("register_backends", self.backends)):
                caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
                caller(register=registrar(hook, registry))
        except _CAUGHT as exc:  # any plugin error is recorded, sys.exit() included
            for registry in (self.registry, self.metrics, self.backends):
                registry.remove_plugin(name)
            # Not ``pm.is_registered(plugin)``: the same object may be registered under another name.
            if self.pm.get_plugin(name) is plugin:
                self.pm.unregister(name=name)
            return self._fail(name, distribution, version, exc, strict=strict, builtin=builtin)
        info = PluginInfo(name, distribution, version, builtin, "loaded",
                          tuple(registered["register_methods"]),
                          metrics=tuple(registered["register_metrics"]),
                          backends=tuple(registered["register_backends"]))
        self.plugins.append(info)
        return info

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and its methods (tests use this to clean up)."""
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        for registry in (self.registry, self.metrics, self.backends):
            registry.remove_plugin(name)
        self.plugins = [p for p in self.plugins if p.name != name]

    def _name_conflict(self, name: str, dist: str, version: str, *,
                       builtin: bool) -> PluginError | None:
        """Why ``dist`` may not use the plugin name ``name``, or ``None`` when it may.

        Built-in names are reserved; any other name belongs to the first
        plugin recorded under it (loaded or failed; disabled ones hold none).
        """
        if not builtin and name in BUILTIN_PLUGINS:
            return PluginError(f"plugin name {name!r} of distribution {dist} {version} is reserved "
                               f"for the built-in plugin of distribution attribkit {_own_version()}")
        for other in self.plugins:
            if other.name == name and other.status != "disabled":
                return PluginError(f"plugin name {name!r} of distribution {dist} {version} is already "
                                   f"taken by distribution {other.distribution} {other.version}")
        return None

    def _fail(self, name: str, dist: str, version: str, exc: BaseException, *,
              strict: bool, builtin: bool = False) -> PluginInfo:
        summary = _summary(exc)
        if strict:
            raise PluginError(
                f"plugin {name!r} (distribution {dist} {version}) failed: {summary}"
            ) from exc
        detail = "".join(traceback.format_exception(exc)).rstrip()
        info = PluginInfo(name, dist, version, builtin, "failed", error=summary, detail=detail)
        self.plugins.append(info)
        return info

    @property
    def failures(self) -> list[PluginInfo]:
        """The plugins that failed to load."""
        return [p for p in self.plugins if p.status == "failed"]


def _summary(exc: BaseException) -> str:
    """One line for tables: the exception type and the first non-blank line of its message."""
    if isinstance(exc, SystemExit):
        return f"SystemExit: the plugin called sys.exit({exc.code!r})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


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
