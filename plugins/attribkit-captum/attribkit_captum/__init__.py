"""attribkit-captum: every Captum attribution method behind ``ak.explain``.

The entry point ``captum = "attribkit_captum"`` (group ``attribkit``) registers
this module. Its ``register_methods`` hook reads the static table in
:mod:`attribkit_captum.table` and imports neither torch nor Captum, so
``attribkit methods`` stays fast. Captum is imported by a method's factory,
on first use; if it is missing (or broken) that factory raises
:class:`attribkit.errors.MissingDependencyError` naming the package to install,
so ``captum.integrated_gradients`` is never an "unknown method".
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import itertools

from attribkit.errors import DuplicateMethodError, MissingDependencyError
from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec, MetricSpec

from attribkit_captum.table import BATCH_COUPLED, BY_CLASS, METRICS, SUPPORTED, UNSUPPORTED, Entry

__all__ = ["CaptumFactory", "CaptumTextFactory", "MIN_CAPTUM", "INSTALL_HINT", "coverage", "dropped_aliases",
           "register_methods", "SUPPORTED", "UNSUPPORTED"]

MIN_CAPTUM = (0, 8)
INSTALL_HINT = "pip install 'attribkit[captum]' (or: pip install 'captum>=0.8')"

#: method name -> aliases left out because another plugin already had them.
_dropped: dict[str, tuple[str, ...]] = {}


def dropped_aliases() -> dict[str, tuple[str, ...]]:
    """Aliases this plugin did not register because another plugin owns them."""
    return dict(_dropped)


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for piece in version.split(".")[:3]:
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def import_captum():
    """``captum.attr``, or :class:`MissingDependencyError` with the install line."""
    try:
        import captum
        import captum.attr
    except ImportError as exc:
        raise MissingDependencyError(
            f"Captum methods need the captum package, which could not be imported ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from exc
    version = getattr(captum, "__version__", "0")
    if _version_tuple(version) < MIN_CAPTUM:
        raise MissingDependencyError(
            f"attribkit-captum needs captum>=0.8, found captum {version}; upgrade with: "
            f"{INSTALL_HINT}"
        )
    return captum.attr


class CaptumFactory:
    """A spec factory: imports Captum on first use and builds the adapter of one class."""

    def __init__(self, cls: str) -> None:
        self.cls = cls

    def __call__(self):
        attr = import_captum()
        if not hasattr(attr, self.cls):
            raise MissingDependencyError(
                f"the installed captum has no {self.cls}; upgrade with: {INSTALL_HINT}"
            )
        from attribkit_captum import exports
        from attribkit_captum import kernels

        exports.check_coverage()
        return kernels.build(BY_CLASS[self.cls])

    def __repr__(self) -> str:
        return f"CaptumFactory({self.cls!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.cls == self.cls

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.cls))


class CaptumTextFactory(CaptumFactory):
    """A spec's ``text`` factory: imports Captum on first use and builds the text kernel
    of one class (:mod:`attribkit_captum.text`)."""

    def __call__(self):
        import_captum()
        from attribkit_captum.text import build_text

        return build_text(BY_CLASS[self.cls])

    def __repr__(self) -> str:
        return f"CaptumTextFactory({self.cls!r})"


def spec_for(entry: Entry, *, available: bool = True) -> MethodSpec:
    """The :class:`MethodSpec` of one table entry."""
    description = entry.description
    if not available:
        description = f"[needs captum: {INSTALL_HINT}] {description}"
    return MethodSpec(
        name=entry.method_name,
        aliases=entry.aliases,
        family=entry.family,
        factory=CaptumFactory(entry.cls),
        needs=entry.needs,
        output=entry.output,
        sign=entry.sign,
        options=dict(entry.options),
        reference=entry.reference,
        description=description,
        batch_independent=entry.cls not in BATCH_COUPLED,
        text=None if entry.text is None else CaptumTextFactory(entry.cls),
        text_options=dict(entry.text or {}),
    )


def _register_keeping_free_aliases(register, spec: MethodSpec) -> None:
    """Register ``spec`` with as many of its aliases as are still free.

    A clash raises before anything is added, so subsets of the aliases are tried,
    largest first; a clash of the ``captum.*`` name itself is re-raised.
    """
    aliases = spec.aliases
    for size in range(len(aliases), -1, -1):
        for subset in itertools.combinations(aliases, size):
            try:
                register(dataclasses.replace(spec, aliases=subset))
            except DuplicateMethodError:
                if not subset:
                    raise
                continue
            if len(subset) < len(aliases):
                _dropped[spec.name] = tuple(a for a in aliases if a not in subset)
            return


@hookimpl
def register_methods(register):
    """Register every supported Captum class as ``captum.<name>`` (plus free aliases).

    Uses the static table only: no torch, no Captum import here. Whether Captum
    can be found is checked with ``importlib.util.find_spec`` (no import) and only
    changes the descriptions; the factories report a missing Captum precisely.
    """
    try:
        available = importlib.util.find_spec("captum") is not None
    except (ImportError, ValueError):
        available = False
    _dropped.clear()
    for entry in SUPPORTED:
        _register_keeping_free_aliases(register, spec_for(entry, available=available))


def coverage():
    """Compare the table with the installed Captum's exports (imports Captum).

    Returns a :class:`attribkit_captum.exports.Coverage` with ``registered``,
    ``unsupported`` (class -> reason), ``unknown`` (exported attribution classes
    this plugin does not know yet) and ``missing`` (table classes the installed
    Captum lacks).
    """
    return importlib.import_module("attribkit_captum.exports").coverage()


@hookimpl
def register_metrics(register):
    """Register Captum's ``infidelity`` and ``sensitivity_max`` for the benchmark
    (static descriptions; Captum is imported when a metric first runs)."""
    for name, meta in METRICS.items():
        register(MetricSpec(name=name, **meta))
