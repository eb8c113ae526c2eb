"""Which methods and metrics a bench run scores: ``--methods`` / ``--metrics`` or the
profile's (:mod:`attribkit.bench.profiles`), less what the subject cannot run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from attribkit.api import get_method, get_metric, methods, metrics
from attribkit.errors import UnknownMethodError
from attribkit.registry import MethodSpec, MetricSpec
from attribkit.torch.lrp.composites import COMPOSITES, TRANSFORMER_COMPOSITES

if TYPE_CHECKING:
    from attribkit.bench.config import BenchConfig
    from attribkit.bench.subject import Subject

SLOW_FAMILIES = ("perturbation",)
#: methods scored once per value of one option: the registered default under the
#: method's name, each other value as ``name.value`` (``lrp.epsilon_gamma_box``), in
#: this order (the quick profile takes the first one of each kind, see
#: :data:`TRANSFORMER_VARIANTS`)
VARIANTS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "lrp": ("composite", COMPOSITES + TRANSFORMER_COMPOSITES),
}
#: the values of a :data:`VARIANTS` option that are for transformers only (the others
#: are for models without attention). On a transformer the first one stands in for the
#: method's default, which resolves to it there (``lrp`` runs ``attnlrp`` on a model
#: with attention), so the bench scores ``lrp.attnlrp`` and ``lrp.cp_lrp`` on a ViT and
#: ``lrp``, ``lrp.epsilon_gamma_box``, ... on a CNN (:func:`fitting`)
TRANSFORMER_VARIANTS: dict[str, tuple[Any, ...]] = {"lrp": TRANSFORMER_COMPOSITES}
#: the value a method's ``"auto"`` default takes on a model without attention (not
#: scored again as a variant there)
AUTO_ELSEWHERE: dict[str, Any] = {"lrp": "epsilon_plus_flat"}


def variants(spec: MethodSpec, limit: int | None = None) -> list[MethodSpec]:
    """``spec``, then one spec per other value of its :data:`VARIANTS` option, named
    ``name.value`` with that value as its default (explain takes the spec itself): at
    most ``limit`` of the values for models without attention and ``limit`` + 1 of the
    :data:`TRANSFORMER_VARIANTS` (the first of those replaces ``spec`` on a
    transformer)."""
    if spec.name not in VARIANTS:
        return [spec]
    option, values = VARIANTS[spec.name]
    special = TRANSFORMER_VARIANTS.get(spec.name, ())

    def variant(value: Any) -> MethodSpec:
        return dataclasses.replace(spec, name=f"{spec.name}.{value}", aliases=(),
                                   options={**spec.options, option: value})

    same = (spec.options[option], AUTO_ELSEWHERE.get(spec.name))
    others = [variant(v) for v in values if v not in same and v not in special]
    for_transformers = [variant(v) for v in special]
    return [spec, *others[:limit], *for_transformers[:None if limit is None else limit + 1]]


def bench_method(name: str) -> MethodSpec:
    """A registered method by name or alias, or a :func:`variants` name."""
    try:
        return get_method(name)
    except UnknownMethodError:
        base = name.rpartition(".")[0]
        if base in VARIANTS:
            for spec in variants(get_method(base)):
                if spec.name == name:
                    return spec
        raise


def choose_methods(config: BenchConfig) -> list[MethodSpec]:
    """``--methods`` or the profile's: every registered method except the perturbation
    family (ask for those by name), only attribkit's own in the quick profile; each with
    its :func:`variants` (the LRP composites: all in full, one of each kind in quick, and
    :func:`runnable` keeps those for the model's kind)."""
    if config.methods:
        return [bench_method(m) for m in config.methods]
    settings = config.settings()
    chosen = [s for s in methods() if s.family not in SLOW_FAMILIES]
    if settings["builtin_only"]:
        chosen = [s for s in chosen if (s.plugin or "").startswith("attribkit.")]
    return [v for s in chosen for v in variants(s, settings["variants"])]


def choose_metrics(config: BenchConfig, subject: Subject) -> list[MetricSpec]:
    """``--metrics`` or the profile's (quick: :data:`~attribkit.bench.profiles.QUICK_METRICS`;
    full: every registered metric), keeping those whose needs the subject meets (the
    ground-truth metrics need evidence masks; a target object has no classifier classes, so
    the metrics that read them are left out, :data:`attribkit.evaluation.scoring.CLASS_METRICS`)."""
    if config.metrics:
        chosen = [get_metric(m) for m in config.metrics]
    else:
        names = config.settings()["metrics"]
        chosen = [m for m in metrics() if (names is None or m.name in names) and "tokens" not in m.needs]
    if not isinstance(subject.targets, torch.Tensor):
        from attribkit.evaluation.scoring import needs_classes

        options = config.settings()["metric_options"]
        chosen = [m for m in chosen if not needs_classes(m.name, options.get(m.name, {}))]
    return [m for m in chosen if "ground_truth" not in m.needs or subject.masks is not None]


def runnable(specs: list[MethodSpec], subject: Subject, log: Callable[[str], None] = print,
             asked: bool = False) -> list[MethodSpec]:
    """``specs`` without the methods whose needs the model cannot meet: those that need
    attention when the model runs none that :mod:`attribkit.torch.attention` can read
    (the attention family on a CNN). They are left out quietly, with one line in the
    log only when they were asked for by name (``asked``). The profile's variants are
    those for the model's kind (:func:`fitting`); names asked for are all kept (a CNN
    composite on a ViT gives its error in every row)."""
    if not asked:
        specs = fitting(specs, subject.model)
    wanting = [s.name for s in specs if "attention" in s.needs]
    if not wanting:
        return specs
    from attribkit.torch.attention import has_attention

    if has_attention(subject.model, subject.inputs[:1]):
        return specs
    if asked:
        log(f"skipped (the model has no attention to read): {', '.join(wanting)}")
    return [s for s in specs if "attention" not in s.needs]



def fitting(specs: list[MethodSpec], model: torch.nn.Module) -> list[MethodSpec]:
    """``specs`` less the variants for the other kind of model: on a transformer
    (:func:`~attribkit.torch.lrp.composites.is_transformer`, the test ``lrp`` itself
    uses) the default of a method with :data:`TRANSFORMER_VARIANTS` (it would repeat
    ``lrp.attnlrp``) and its variants for models without attention; elsewhere its
    transformer variants."""
    from attribkit.torch.lrp.composites import is_transformer

    transformer = is_transformer(model)

    def fits(spec: MethodSpec) -> bool:
        if spec.name in TRANSFORMER_VARIANTS:
            return not transformer
        base, _, value = spec.name.rpartition(".")
        if base in TRANSFORMER_VARIANTS:
            return (value in TRANSFORMER_VARIANTS[base]) == transformer
        return True

    return [s for s in specs if fits(s)]
