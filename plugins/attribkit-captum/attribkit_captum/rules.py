"""What each Captum class accepts, checked before Captum runs (torch only, no Captum).

Captum checks many arguments with bare ``assert`` statements deep inside
``attribute()`` (``n_steps=0``: "The number of steps has to be larger than
zero"), and others not at all (a negative ``stdevs`` fails in ``torch.normal``,
``n_samples=0`` divides by zero, a bad ``interpolate_mode`` makes GuidedGradCam
return an empty tensor). :data:`RULES` states what every option accepts, once,
and :func:`validate` raises :class:`~attribkit.errors.InvalidOptionError`
naming the method, the option, what is accepted and what was given.

A rule runs at one of three stages, by what it needs to know:

- ``"options"``: the value alone, before any work (and before the DeepLift
  family's private copy of the model);
- ``"inputs"``: the chunk of images (baseline and mask shapes, window sizes);
- ``"layer"``: the shape of the layer's output (layer masks and baselines),
  known after the adapter's probe forward.

Options are checked under attribkit's names (``integration_method``, not
Captum's ``method``), after the registry's type check (so an ``int`` option
may still hold a ``float``: the rules require integers where Captum does).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from attribkit.errors import InvalidOptionError
from attribkit_captum import defaults
from attribkit_captum.table import Entry

#: Captum's integration rules (``IntegratedGradients(method=...)``), documented in its API.
INTEGRATION_METHODS = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle",
                       "riemann_trapezoid")
#: ``torch.nn.functional.interpolate`` modes for the 4-D Grad-CAM map of GuidedGradCam.
INTERPOLATE_MODES = ("nearest", "nearest-exact", "area", "bilinear", "bicubic")
GROUPS = ("position", "channel", "neuron")
#: Entries whose ``baselines`` is a distribution (``(n, ...)`` rows, the same for every image).
DISTRIBUTION = frozenset({"DeepLiftShap", "GradientShap", "LayerDeepLiftShap",
                          "LayerGradientShap"})
#: ... of which these need at least two baselines (Captum: "use DeepLift instead").
TWO_BASELINES = frozenset({"DeepLiftShap", "LayerDeepLiftShap"})
STAGES = ("options", "inputs", "layer")


@dataclasses.dataclass(frozen=True)
class Context:
    """What a rule may look at besides the value: the entry, all options (attribkit's
    names, defaults filled in), the chunk (stage ``"inputs"``), the layer's output shape
    (stage ``"layer"``)."""

    entry: Entry
    options: Mapping[str, Any]
    inputs: torch.Tensor | None = None
    layer_shape: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Rule:
    """``option`` must satisfy ``valid(value, context)``; ``accepted`` says what is accepted.

    ``classes``: the Captum classes it applies to (``None``: every class with the
    option); ``when``: it applies only if this holds (e.g. a Riemann rule).
    """

    option: str
    valid: Callable[[Any, Context], bool]
    accepted: str | Callable[[Context], str]
    stage: str = "options"
    classes: frozenset[str] | None = None
    when: Callable[[Context], bool] | None = None

    def applies(self, stage: str, ctx: Context) -> bool:
        """Whether this rule checks ``ctx``'s options at ``stage``."""
        return (self.stage == stage and self.option in ctx.options
                and (self.classes is None or ctx.entry.cls in self.classes)
                and (self.when is None or self.when(ctx)))


# ---- value predicates ----------------------------------------------------------------------

def _int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(least: int) -> Callable[[Any, Context], bool]:
    return lambda v, _ctx: _int(v) and v >= least


def _maybe_integer(least: int) -> Callable[[Any, Context], bool]:
    return lambda v, _ctx: v is None or (_int(v) and v >= least)


def _number(least: float, *, strict: bool = False) -> Callable[[Any, Context], bool]:
    return lambda v, _ctx: _real(v) and (v > least if strict else v >= least)


def _one_of(choices: Sequence[str]) -> Callable[[Any, Context], bool]:
    return lambda v, _ctx: isinstance(v, str) and v in choices


def _maybe_callable(value: Any, _ctx: Context) -> bool:
    return value is None or callable(value)


def _interpretable_model(value: Any, _ctx: Context) -> bool:
    return value is None or all(callable(getattr(value, name, None))
                                for name in ("fit", "representation"))


def _maybe_seed(value: Any, _ctx: Context) -> bool:
    return value is None or _int(value)


def _choices(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


# ---- baselines -------------------------------------------------------------------------------

def _baseline_kind(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value in defaults.BASELINE_KINDS) or \
        _real(value) or isinstance(value, torch.Tensor)


def _baseline_form(value: Any, ctx: Context) -> bool:
    if ctx.entry.cls in DISTRIBUTION and isinstance(value, (list, tuple)):
        return bool(value) and all(v is not None and _baseline_kind(v) for v in value)
    return _baseline_kind(value)


def _baseline_form_accepted(ctx: Context) -> str:
    kinds = f"None, {_choices(defaults.BASELINE_KINDS)}, a number or a tensor"
    return f"{kinds}, or a non-empty list of them" if ctx.entry.cls in DISTRIBUTION else kinds


def _row_shapes(x: torch.Tensor) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(x.shape), (1, *x.shape[1:])


def _baseline_fits(value: Any, ctx: Context) -> bool:
    """A tensor of the chunk's shape or one row of it; 'blur' only for images."""
    x = ctx.inputs
    if isinstance(value, str):
        return value != "blur" or x.ndim == 4
    return not isinstance(value, torch.Tensor) or tuple(value.shape) in _row_shapes(x)


def _baseline_fits_accepted(ctx: Context) -> str:
    full, one = _row_shapes(ctx.inputs)
    return (f"a tensor of shape {one} (every image) or {full} (one per image of the chunk; "
            "with batch_size smaller than the batch, give one row), and 'blur' only for "
            "(B, C, H, W) images")


def _distribution_items(value: Any, x: torch.Tensor) -> list[Any]:
    if value is None:
        return ["zeros", "blur"] if x.ndim == 4 else ["zeros"]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _distribution_fits(value: Any, ctx: Context) -> bool:
    """Tensors with the image's shape per row, 'blur' only for images, and at least two
    baselines in all for the DeepLiftShap classes."""
    x = ctx.inputs
    items = _distribution_items(value, x)
    rows = 0
    for item in items:
        if isinstance(item, torch.Tensor):
            if item.ndim != x.ndim or item.shape[1:] != x.shape[1:] or not len(item):
                return False
            rows += len(item)
        elif item == "blur" and x.ndim != 4:
            return False
        else:
            rows += 1
    return rows >= (2 if ctx.entry.cls in TWO_BASELINES else 1)


def _distribution_accepted(ctx: Context) -> str:
    least = 2 if ctx.entry.cls in TWO_BASELINES else 1
    default = "zeros and a blurred copy" if ctx.inputs.ndim == 4 else "zeros only"
    return (f"at least {least} baseline(s) in all (the default for these inputs: {default}): "
            f"tensors of shape (n, {', '.join(map(str, ctx.inputs.shape[1:]))}), numbers or "
            f"{_choices(defaults.BASELINE_KINDS)} ('blur' only for (B, C, H, W) images)")


def _layer_baseline_fits(value: Any, ctx: Context) -> bool:
    shape = ctx.layer_shape
    return value is None or _real(value) or (
        isinstance(value, torch.Tensor) and tuple(value.shape) in (shape, (1, *shape[1:])))


def _layer_baseline_accepted(ctx: Context) -> str:
    shape = ctx.layer_shape
    return f"None, a number or a tensor of shape {(1, *shape[1:])} or {shape} (the layer's output)"


# ---- masks -----------------------------------------------------------------------------------

def _mask_form(value: Any, _ctx: Context) -> bool:
    return value is None or (
        isinstance(value, torch.Tensor) and not value.is_floating_point()
        and not value.is_complex() and value.dtype != torch.bool
        and (value.numel() == 0 or int(value.min()) >= 0))


MASK_FORM = "None or an integer tensor of feature ids >= 0"


def _broadcasts(mask: torch.Tensor, shape: tuple[int, ...]) -> bool:
    if mask.ndim > len(shape):
        return False
    padded = (1,) * (len(shape) - mask.ndim) + tuple(mask.shape)
    return all(m in (1, s) for m, s in zip(padded, shape))


def _mask_fits(value: Any, ctx: Context) -> bool:
    return value is None or _broadcasts(value, tuple(ctx.inputs.shape))


def _layer_mask_fits(value: Any, ctx: Context) -> bool:
    return value is None or _broadcasts(value, ctx.layer_shape)


def _fits_accepted(shape: tuple[int, ...], what: str) -> str:
    return (f"a mask that broadcasts to {what} {shape}: each dimension 1 or equal (rows: 1 or one "
            "per image of the chunk)")


def _two_features(value: Any, _ctx: Context) -> bool:
    return value is None or value.unique().numel() >= 2


def _grid_has_two_cells(grid: Any, ctx: Context) -> bool:
    height, width = ctx.inputs.shape[-2:]
    return min(grid, height) * min(grid, width) >= 2


def _group_fits(group: Any, ctx: Context) -> bool:
    return group == "neuron" or len(ctx.layer_shape) >= 2


# ---- occlusion windows -----------------------------------------------------------------------

def _window_form(value: Any, _ctx: Context) -> bool:
    if value is None:
        return True
    if _int(value):
        return value >= 1
    return isinstance(value, (tuple, list)) and len(value) in (2, 3) and \
        all(_int(v) and v >= 1 for v in value)


WINDOW_FORM = "None, an integer >= 1, or (h, w) or (C, h, w) integers >= 1"


def _windows(ctx: Context) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return defaults.occlusion_window(ctx.inputs, ctx.options["sliding_window_shapes"],
                                     ctx.options["strides"])


def _window_fits(_value: Any, ctx: Context) -> bool:
    window, _ = _windows(ctx)
    return all(w <= s for w, s in zip(window, ctx.inputs.shape[1:]))


def _window_fits_accepted(ctx: Context) -> str:
    return (f"a window no larger than the image (C, H, W) = {tuple(ctx.inputs.shape[1:])}; "
            f"it was resolved to {_windows(ctx)[0]}")


def _strides_fit(_value: Any, ctx: Context) -> bool:
    window, strides = _windows(ctx)
    return all(s <= w or w == size for s, w, size in zip(strides, window, ctx.inputs.shape[1:]))


def _strides_fit_accepted(ctx: Context) -> str:
    window, strides = _windows(ctx)
    return (f"strides no larger than the window {window} where the window is smaller than the "
            f"image {tuple(ctx.inputs.shape[1:])} (Captum would skip pixels); they were "
            f"resolved to {strides}")


def _riemann(ctx: Context) -> bool:
    return str(ctx.options.get("integration_method", "")).startswith("riemann")


RULES: tuple[Rule, ...] = (
    # ---- integrated paths: IntegratedGradients, LayerIntegratedGradients,
    #      LayerConductance, InternalInfluence
    Rule("n_steps", _integer(1), "an integer >= 1"),
    # Riemann sums need two points; LayerConductance evaluates n_steps + 1 points
    Rule("n_steps", _integer(2), "an integer >= 2 with a riemann_* integration_method",
         when=lambda ctx: _riemann(ctx) and ctx.entry.cls != "LayerConductance"),
    Rule("integration_method", _one_of(INTEGRATION_METHODS),
         f"one of {_choices(INTEGRATION_METHODS)}"),
    Rule("internal_batch_size", _maybe_integer(1), "None or an integer >= 1"),
    # ---- sampling and noise
    Rule("n_samples", _integer(1), "an integer >= 1"),
    Rule("stdevs", _number(0.0), "a number >= 0 (the standard deviation of the noise)"),
    Rule("seed", _maybe_seed, "None or an integer"),
    # ---- perturbation batching, DeepLift's eps, GuidedGradCam's upsampling
    Rule("perturbations_per_eval", _maybe_integer(1), "None or an integer >= 1"),
    Rule("eps", _number(0.0, strict=True), "a number > 0 (smaller input changes count as none)"),
    Rule("interpolate_mode", _one_of(INTERPOLATE_MODES), f"one of {_choices(INTERPOLATE_MODES)}"),
    # ---- Lime's surrogate
    Rule("interpretable_model", _interpretable_model,
         "None or a Captum model with fit() and representation() (e.g. "
         "captum._utils.models.linear_model.SkLearnLasso)"),
    Rule("similarity_func", _maybe_callable, "None or a callable"),
    Rule("perturb_func", _maybe_callable, "None or a callable"),
    # ---- baselines
    Rule("baselines", _baseline_form, _baseline_form_accepted),
    Rule("baselines", _baseline_fits, _baseline_fits_accepted, stage="inputs",
         when=lambda ctx: ctx.entry.cls not in DISTRIBUTION),
    Rule("baselines", _distribution_fits, _distribution_accepted, stage="inputs",
         classes=DISTRIBUTION),
    Rule("layer_baselines", _layer_baseline_fits, _layer_baseline_accepted, stage="layer"),
    # ---- feature masks and the default grid
    Rule("feature_mask", _mask_form, MASK_FORM),
    Rule("feature_mask", _mask_fits,
         lambda ctx: _fits_accepted(tuple(ctx.inputs.shape), "the inputs"), stage="inputs"),
    Rule("feature_mask", _two_features, "a mask with at least 2 features (KernelShap's sampling "
         "distribution needs 2)", classes=frozenset({"KernelShap"})),
    Rule("grid", _integer(1), "an integer >= 1 (grid x grid cells)"),
    Rule("grid", _grid_has_two_cells, "an integer >= 2 (KernelShap needs at least 2 features)",
         stage="inputs", classes=frozenset({"KernelShap"}),
         when=lambda ctx: ctx.options.get("feature_mask") is None),
    # ---- layer masks
    Rule("layer_mask", _mask_form, MASK_FORM),
    Rule("layer_mask", _layer_mask_fits,
         lambda ctx: _fits_accepted(ctx.layer_shape, "the layer's output"), stage="layer"),
    Rule("group", _one_of(GROUPS), f"one of {_choices(GROUPS)}"),
    Rule("group", _group_fits, "'neuron' for a layer output without channels", stage="layer",
         when=lambda ctx: ctx.options.get("layer_mask") is None),
    # ---- Occlusion
    Rule("sliding_window_shapes", _window_form, WINDOW_FORM),
    Rule("strides", _window_form, WINDOW_FORM),
    Rule("sliding_window_shapes", _window_fits, _window_fits_accepted, stage="inputs"),
    Rule("strides", _strides_fit, _strides_fit_accepted, stage="inputs"),
)


def describe(value: Any) -> str:
    """A short description of a value for an error message (tensors by dtype and shape)."""
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate(entry: Entry, options: Mapping[str, Any], stage: str, *,
             inputs: torch.Tensor | None = None,
             layer_shape: tuple[int, ...] | None = None) -> None:
    """Check the options of ``entry`` that ``stage`` (one of :data:`STAGES`) can check.

    The first violation raises :class:`InvalidOptionError` naming the method, the
    option, what is accepted and what was given.
    """
    ctx = Context(entry, options, inputs, layer_shape)
    for rule in RULES:
        if not rule.applies(stage, ctx):
            continue
        value = options[rule.option]
        if not rule.valid(value, ctx):
            accepted = rule.accepted(ctx) if callable(rule.accepted) else rule.accepted
            raise InvalidOptionError(
                f"{entry.method_name}: option {rule.option!r} must be {accepted}; "
                f"got {describe(value)}"
            )
