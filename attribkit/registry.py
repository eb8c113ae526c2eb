"""Method specifications and the registry that maps names to them.

A :class:`MethodSpec` describes one attribution method without importing its
implementation: the implementation is produced by ``factory`` (a callable or
an ``"module:attribute"`` string) only when the method is first used.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.machinery
import importlib.util
import numbers
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from attribkit.errors import (
    DuplicateMethodError,
    InvalidOptionError,
    MissingDependencyError,
    PluginError,
    SpecError,
    UnknownMethodError,
)

FAMILIES = ("gradient", "cam", "attention", "lrp", "perturbation", "other")
METRIC_KINDS = ("faithfulness", "localisation", "sanity", "robustness", "complexity", "axiomatic")
METRIC_NEEDS = ("forward", "ground_truth", "model", "method", "tokens")
NEEDS = ("autograd", "layer", "module", "forward", "attention", "box_target")
OUTPUTS = ("pixel", "layer")
SIGNS = ("signed", "non-negative")
# one readable method per main family: ak.compare's and the demo's default columns (<= 8 with the image)
MAIN_METHODS = ("saliency", "smoothgrad", "guided_backprop", "lrp", "gradcam", "scorecam", "guided_gradcam")

#: import name -> the distribution to pip install, where they differ
PIP_NAMES = {"sklearn": "scikit-learn", "skimage": "scikit-image", "cv2": "opencv-python",
             "PIL": "pillow", "pytorch_grad_cam": "grad-cam"}

_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def normalize_name(name: str) -> str:
    """Lookup key of a method name: case-insensitive, ``-`` and spaces read as ``_``."""
    return re.sub(r"[-\s]+", "_", name.strip().lower())


def _is_factory_string(factory: object) -> bool:
    """Whether ``factory`` reads ``"dotted.module:attribute"``."""
    if not isinstance(factory, str):
        return False
    module, colon, attr = factory.partition(":")
    return bool(colon) and attr.isidentifier() and all(p.isidentifier() for p in module.split("."))


def _module_exists(name: str) -> bool:
    """Whether module ``name`` is imported or can be found on the import path.

    Nothing is imported: a dotted name is looked up one package at a time in
    the parent package's folders, so no package ``__init__`` on the way runs
    (``attribkit.torch.cam`` is found without importing torch).
    """
    return name in sys.modules or _find_spec(name) is not None


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    parent, _, _ = name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(name)
    if parent in sys.modules:
        path = getattr(sys.modules[parent], "__path__", None)
    else:
        parent_spec = _find_spec(parent)
        path = None if parent_spec is None else parent_spec.submodule_search_locations
    return None if path is None else importlib.machinery.PathFinder.find_spec(name, list(path))


class _Spec:
    """What method and metric specs share: names, a lazy factory, option binding.

    Subclasses are frozen dataclasses with ``name``, ``aliases``, ``factory``,
    ``options`` and ``plugin`` fields.
    """

    noun = "spec"

    def _check_common(self) -> None:
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(self, "options", dict(self.options))
        for label in (self.name, *self.aliases):
            if not isinstance(label, str) or not _NAME.match(label):
                raise SpecError(
                    f"{self.noun} name {label!r} is invalid: use lower-case letters, digits, "
                    "'_' and '.' namespaces, starting with a letter"
                )
        if not (callable(self.factory) or _is_factory_string(self.factory)):
            raise SpecError(
                f"{self.noun} {self.name!r}: factory must be a callable or a 'module:attribute' "
                f"string, got {self.factory!r}"
            )
        for option in self.options:
            if not isinstance(option, str) or not option.isidentifier():
                raise SpecError(f"{self.noun} {self.name!r}: option name {option!r} is not an identifier")

    @property
    def labels(self) -> tuple[str, ...]:
        """The name followed by the aliases."""
        return (self.name, *self.aliases)

    def check_factory(self) -> None:
        """Raise :class:`SpecError` when a ``"module:attr"`` factory's module cannot be found.

        The module is located, not imported (see ``_module_exists``); a
        missing attribute is only seen by :meth:`load`.
        """
        if isinstance(self.factory, str):
            module_name = self.factory.partition(":")[0]
            if not _module_exists(module_name):
                raise SpecError(f"{self._origin()}: factory {self.factory!r} names module "
                                f"{module_name!r}, which cannot be found")

    def load(self) -> Callable[..., Any]:
        """Import (once) and return the implementation.

        A ``"module:attr"`` factory whose module is missing or lacks ``attr``
        raises :class:`PluginError`, one whose module fails to import a
        dependency :class:`MissingDependencyError`; both name the plugin and
        the factory.
        """
        impl = self.__dict__.get("_impl")
        if impl is not None:
            return impl
        impl = self._import_factory() if isinstance(self.factory, str) else self.factory()
        if not callable(impl):
            raise SpecError(f"{self.noun} {self.name!r}: factory returned {impl!r}, which is not callable")
        object.__setattr__(self, "_impl", impl)
        return impl

    def _origin(self) -> str:
        plugin = f" of plugin {self.plugin!r}" if self.plugin else ""
        return f"{self.noun} {self.name!r}{plugin}"

    def _import_factory(self) -> Any:
        module_name, _, attr = self.factory.partition(":")
        where = f"{self._origin()}: factory {self.factory!r}"
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = (exc.name or "") if isinstance(exc, ModuleNotFoundError) else ""
            if missing and (module_name == missing or module_name.startswith(missing + ".")):
                raise PluginError(f"{where}: module {module_name!r} cannot be found") from exc
            package = missing.partition(".")[0]
            hint = f"; install it: pip install {PIP_NAMES.get(package, package)}" if missing else ""
            raise MissingDependencyError(
                f"{where}: importing {module_name!r} failed: {type(exc).__name__}: {exc}{hint}"
            ) from exc
        try:
            return getattr(module, attr)
        except AttributeError as exc:
            raise PluginError(f"{where}: module {module_name!r} has no attribute {attr!r}") from exc

    def bind_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Merge user options into the defaults, rejecting unknown names and wrong types."""
        unknown = [k for k in given if k not in self.options]
        if unknown:
            valid = ", ".join(sorted(self.options)) or "none"
            hint = difflib.get_close_matches(unknown[0], list(self.options), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidOptionError(
                f"{self.noun} {self.name!r} has no option {unknown[0]!r}{extra}; valid options: {valid}"
            )
        bound = dict(self.options)
        for key, value in given.items():
            _check_option_type(self.noun, self.name, key, self.options[key], value)
            bound[key] = value
        return bound


@dataclasses.dataclass(frozen=True)
class MethodSpec(_Spec):
    """Everything attribkit knows about a method before loading it.

    Attributes:
        name: canonical name, lower case, dots allowed for namespaces
            (``"saliency"``, ``"captum.integrated_gradients"``).
        family: ``gradient``, ``cam``, ``attention``, ``lrp``, ``perturbation`` or ``other``.
        factory: returns the implementation; a callable, or ``"module:attr"``
            naming one (imported on first use).  The implementation is called
            as ``impl(model, inputs, method=, target=, layer=, batch_size=,
            options=)`` and returns an :class:`~attribkit.result.Attribution`.
        aliases: other names that resolve to this method.
        needs: what the method requires of the model: ``autograd``, ``layer``
            (an internal layer), ``module`` (the module tree), ``forward``
            (only a callable mapping a batch to scores), ``attention`` (a
            transformer whose attention probabilities it reads), ``box_target``
            (a detector explained for an :class:`attribkit.targets.Box`: ``drise``).
        output: ``pixel`` (same shape as the input) or ``layer`` (a map at a
            layer's resolution, upsampled on request).
        sign: ``signed`` or ``non-negative`` values.
        options: accepted keyword options and their defaults.
        reference: the paper or source the method implements.
        description: one line for tables.
        batch_independent: ``False`` when an image's map depends on the other
            images of the batch (e.g. feature permutation across the batch).
        plugin: name of the plugin that registered it (set by the host).
        text: the method's kernel on token inputs (language models), a callable or
            ``"module:attr"``, else ``None``: called as ``kernel(text_model, plan,
            **options)`` (see :mod:`attribkit.text.runner`).
        text_options: the options of the text kernel and their defaults.
        framework: the method's kernel on models of other frameworks (JAX/Flax, Keras 3),
            written against :class:`attribkit.backends.FrameworkModel`, a callable or
            ``"module:attr"``, else ``None``: called as ``kernel(fm, x, target, layer,
            **options)`` with the method's ``options`` (see :mod:`attribkit.backends.run`).
    """

    name: str
    family: str
    factory: Callable[[], Callable[..., Any]] | str
    aliases: tuple[str, ...] = ()
    needs: tuple[str, ...] = ("autograd",)
    output: str = "pixel"
    sign: str = "signed"
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reference: str = ""
    description: str = ""
    batch_independent: bool = True
    plugin: str | None = None
    text: Callable[[], Callable[..., Any]] | str | None = None
    text_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    framework: Callable[[], Callable[..., Any]] | str | None = None

    noun = "method"

    def for_text(self) -> MethodSpec | None:
        """The spec of the text kernel (its factory and options), or ``None`` when the
        method has none; :meth:`load` and :meth:`bind_options` then work on it."""
        return self._derived("text", options=dict(self.text_options))

    def for_framework(self) -> MethodSpec | None:
        """The spec of the framework kernel (same options), or ``None`` when the method has none."""
        return self._derived("framework")

    def _derived(self, kernel: str, **changes: Any) -> MethodSpec | None:
        """This spec with the ``kernel`` field's factory (made once), or ``None`` without one."""
        if getattr(self, kernel) is None:
            return None
        key = f"_{kernel}_spec"
        if key not in self.__dict__:
            derived = dataclasses.replace(self, factory=getattr(self, kernel), text=None, framework=None, **changes)
            object.__setattr__(self, key, derived)
        return self.__dict__[key]

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", tuple(self.needs))
        self._check_common()
        _check_choice("family", self.family, FAMILIES, self.name)
        _check_choice("output", self.output, OUTPUTS, self.name)
        _check_choice("sign", self.sign, SIGNS, self.name)
        for need in self.needs:
            _check_choice("needs", need, NEEDS, self.name)
        for field in ("text", "framework"):
            kernel = getattr(self, field)
            if kernel is not None and not (callable(kernel) or _is_factory_string(kernel)):
                raise SpecError(f"method {self.name!r}: {field} must be a callable or a 'module:attribute' "
                                f"string, got {kernel!r}")


def family_specs(family: str, kernels: str, **defaults: Any) -> Callable[..., MethodSpec]:
    """A :class:`MethodSpec` builder for one family: ``make(name, **fields)`` gives a spec
    of ``family`` whose factory is ``"{kernels}:{name}"`` (``module=`` names another
    kernel module), with ``defaults`` for the fields an entry does not give."""

    def make(name: str, *, module: str = kernels, **fields: Any) -> MethodSpec:
        return MethodSpec(name=name, family=family, factory=f"{module}:{name}", **{**defaults, **fields})

    return make


@dataclasses.dataclass(frozen=True)
class MetricSpec(_Spec):
    """A faithfulness, localisation, sanity or robustness metric.

    Attributes:
        name: canonical name (``"deletion_auc"``, ``"captum.infidelity"``).
        kind: ``faithfulness``, ``localisation``, ``sanity`` (randomisation checks),
            ``robustness``, ``complexity`` or ``axiomatic``.
        factory: returns the implementation, called as ``impl(data, **options)``
            with a :class:`attribkit.bench.MetricInput`; it returns a
            :class:`attribkit.bench.MetricResult` (one score per image).
        higher_is_better: the direction of the score.
        needs: ``forward`` (a ``predict`` callable), ``ground_truth`` (evidence
            masks), ``model`` (the module itself), ``method`` (re-explaining),
            ``tokens`` (it scores token attributions: :mod:`attribkit.evaluation.tokens`).
        forwards: what one image costs with the default options, in words
            the count first (``"33 (steps + 1)"``, ``"0"``, ``"200 explanations (nr_samples)"``).
        options, aliases, reference, description, plugin: as for methods.
    """

    name: str
    kind: str
    factory: Callable[[], Callable[..., Any]] | str
    higher_is_better: bool
    aliases: tuple[str, ...] = ()
    needs: tuple[str, ...] = ("forward",)
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    reference: str = ""
    description: str = ""
    plugin: str | None = None
    forwards: str = ""

    noun = "metric"

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", tuple(self.needs))
        self._check_common()
        _check_choice("kind", self.kind, METRIC_KINDS, self.name)
        for need in self.needs:
            _check_choice("needs", need, METRIC_NEEDS, self.name)


def _check_choice(field: str, value: str, allowed: tuple[str, ...], name: str) -> None:
    if value not in allowed:
        raise SpecError(f"{name!r}: {field} {value!r} is not one of {', '.join(allowed)}")


def _check_option_type(noun: str, name: str, key: str, default: Any, value: Any) -> None:
    if default is None or value is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, numbers.Integral):  # a count, a size, a seed: 2.5 steps is a mistake
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    elif isinstance(default, numbers.Real):
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise InvalidOptionError(
            f"option {key!r} of {noun} {name!r} expects {type(default).__name__} "
            f"(default {default!r}), got {type(value).__name__} {value!r}"
        )


class Registry:
    """Name -> spec (:class:`MethodSpec` or :class:`MetricSpec`), with aliases and origin plugins."""

    def __init__(self, spec_type: type = MethodSpec) -> None:
        self.spec_type = spec_type
        self._specs: dict[str, Any] = {}
        self._labels: dict[str, Any] = {}

    def add(self, spec: Any) -> None:
        """Add a spec; a name or alias already taken raises naming both plugins."""
        if not isinstance(spec, self.spec_type):
            raise SpecError(f"register() expects a {self.spec_type.__name__}, got {type(spec).__name__}")
        keys = [normalize_name(label) for label in spec.labels]
        if len(set(keys)) != len(keys):
            raise SpecError(f"{spec.noun} {spec.name!r} lists the same name twice in its aliases")
        for label, key in zip(spec.labels, keys):
            other = self._labels.get(key)
            if other is not None:
                raise DuplicateMethodError(
                    f"{spec.noun} name {label!r} from plugin {spec.plugin!r} is already taken by "
                    f"{other.noun} {other.name!r} from plugin {other.plugin!r}"
                )
        self._specs[spec.name] = spec
        for key in keys:
            self._labels[key] = spec

    def remove_plugin(self, plugin: str) -> None:
        """Drop every method that ``plugin`` registered."""
        for spec in [s for s in self._specs.values() if s.plugin == plugin]:
            del self._specs[spec.name]
            for label in spec.labels:
                self._labels.pop(normalize_name(label), None)

    def get(self, name: str) -> Any:
        """Resolve a name or alias; an unknown name raises with close matches."""
        if isinstance(name, self.spec_type):
            return name
        spec = self._labels.get(normalize_name(str(name)))
        if spec is None:
            close = difflib.get_close_matches(normalize_name(str(name)), list(self._labels), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            noun = "attribution method" if self.spec_type is MethodSpec else self.spec_type.noun
            listing = "methods" if self.spec_type is MethodSpec else "metrics"
            raise UnknownMethodError(
                f"unknown {noun} {name!r}{hint} (`attribkit {listing}` lists all {len(self._specs)})"
            )
        return spec

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._labels

    def __iter__(self) -> Iterator[Any]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._specs)
