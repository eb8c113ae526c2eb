"""Registered metrics: a common input, a common result, and the built-in implementations.

A metric is called as ``metric(data: MetricInput, **options) -> MetricResult``.
The input carries what any metric may need; each metric's spec says which
parts it needs (``forward``, ``ground_truth``, ``model``, ``method``), and the
runner fills in only what it has.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from attribkit.bench import metrics as M


@dataclasses.dataclass
class MetricInput:
    """What a metric gets.

    Attributes:
        predict: ``batch -> scores`` (a module or any callable).
        inputs: ``(B, C, H, W)`` images, in the space ``predict`` expects.
        relevance: ``(B, H, W)`` pixel relevance of the method being scored.
        targets: ``(B,)`` explained classes.
        masks: ``(B, H, W)`` bool evidence masks, when ground truth exists.
        model: the ``nn.Module`` (for metrics that modify a copy of it).
        explain: ``(model, inputs, targets) -> (B, H, W)`` relevance of the same
            method on another model or target (for sanity checks).
        batch_size: rows per forward.
    """

    predict: Callable[[torch.Tensor], torch.Tensor]
    inputs: torch.Tensor
    relevance: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor | None = None
    model: nn.Module | None = None
    explain: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    batch_size: int = 256


@dataclasses.dataclass
class MetricResult:
    """One score per image, plus optional curves for plots (name -> list of floats)."""

    scores: torch.Tensor
    curves: dict[str, list[float]] = dataclasses.field(default_factory=dict)


def _curve(curves: torch.Tensor, x: torch.Tensor) -> dict[str, list[float]]:
    return {"x": x.tolist(), "mean": curves.mean(0).tolist()}


# ------------------------------------------------------------ faithfulness

def deletion_auc(data: MetricInput, *, steps: int = 32, baseline: float | None = None,
                 blur_sigma: float = 5.0) -> MetricResult:
    """Deletion AUC (Petsiuk et al. 2018), lower is better; deleted pixels take the
    blurred image's values unless ``baseline`` is a constant; see :func:`metrics.deletion_insertion`."""
    auc, curves = M.deletion_insertion(data.predict, data.inputs, data.relevance, data.targets,
                                       mode="deletion", steps=steps, baseline=baseline,
                                       blur_sigma=blur_sigma, batch_size=data.batch_size)
    return MetricResult(auc, _curve(curves, torch.linspace(0, 1, steps + 1)))


def insertion_auc(data: MetricInput, *, steps: int = 32, blur_sigma: float = 5.0) -> MetricResult:
    """Insertion AUC (Petsiuk et al. 2018), higher is better."""
    auc, curves = M.deletion_insertion(data.predict, data.inputs, data.relevance, data.targets,
                                       mode="insertion", steps=steps, blur_sigma=blur_sigma,
                                       batch_size=data.batch_size)
    return MetricResult(auc, _curve(curves, torch.linspace(0, 1, steps + 1)))


ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def road_morf(data: MetricInput, *, noise: float = 0.01, seed: int = 0) -> MetricResult:
    """ROAD, most relevant first (Rong et al. 2022): mean target probability, lower is better."""
    score, curves = M.road(data.predict, data.inputs, data.relevance, data.targets, order="morf",
                           fractions=ROAD_FRACTIONS, noise=noise, seed=seed, batch_size=data.batch_size)
    return MetricResult(score, _curve(curves, torch.tensor(ROAD_FRACTIONS)))


def road_lerf(data: MetricInput, *, noise: float = 0.01, seed: int = 0) -> MetricResult:
    """ROAD, least relevant first (Rong et al. 2022): mean target probability, higher is better."""
    score, curves = M.road(data.predict, data.inputs, data.relevance, data.targets, order="lerf",
                           fractions=ROAD_FRACTIONS, noise=noise, seed=seed, batch_size=data.batch_size)
    return MetricResult(score, _curve(curves, torch.tensor(ROAD_FRACTIONS)))


# ------------------------------------------------------------ localisation

def pointing_game(data: MetricInput) -> MetricResult:
    """Share of images whose most relevant pixel is inside the evidence mask."""
    return MetricResult(M.pointing_game(data.relevance, data.masks.to(data.relevance.device)))


def relevance_mass_accuracy(data: MetricInput) -> MetricResult:
    """Positive relevance inside the mask / all positive relevance (CLEVR-XAI)."""
    return MetricResult(M.relevance_mass_accuracy(data.relevance, data.masks.to(data.relevance.device)))


def relevance_rank_accuracy(data: MetricInput) -> MetricResult:
    """Share of the top-|mask| pixels inside the mask (CLEVR-XAI)."""
    return MetricResult(M.relevance_rank_accuracy(data.relevance, data.masks.to(data.relevance.device)))


# ------------------------------------------------------------ sanity checks

NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def randomizable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules with their own parameters and a ``reset_parameters`` (normalisation
    layers excluded), from the output end back to the input (module order reversed)."""
    layers = [(name, m) for name, m in model.named_modules()
              if name and not list(m.children()) and any(True for _ in m.parameters(recurse=False))
              and hasattr(m, "reset_parameters") and not isinstance(m, NORM_LAYERS)]
    return layers[::-1]


def _similarities(new: torch.Tensor, base: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "spearman_abs": M.spearman(new.abs(), base.abs()),
        "spearman": M.spearman(new, base),
        "ssim": M.ssim(M.normalize_maps(new), M.normalize_maps(base)),
    }


def cascading_randomization(data: MetricInput, *, seed: int = 0) -> MetricResult:
    """Cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks
    for Saliency Maps"): on a copy of the model, re-initialise layers one by one from
    the output down to the input, re-explain after each, and compare with the
    original maps by Spearman rank correlation of ``|r|`` and of ``r`` and by SSIM
    of the min-max scaled ``|r|``. The score per image is the mean Spearman(|r|)
    over all randomisation steps: **lower is better** (a method that ignores the
    weights stays similar). Curves: the three similarities per randomised layer.
    The user's model and the global RNG are left untouched.
    """
    model = copy.deepcopy(data.model).eval()
    layers = randomizable_layers(model)
    steps: dict[str, list[float]] = {"spearman_abs": [], "spearman": [], "ssim": []}
    per_image = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _name, layer in layers:
            with torch.no_grad():
                layer.reset_parameters()
            sims = _similarities(data.explain(model, data.inputs, data.targets), data.relevance)
            for key, value in sims.items():
                steps[key].append(float(value.mean()))
            per_image.append(sims["spearman_abs"])
    curves = {"layers": [name for name, _ in layers], **steps}
    return MetricResult(torch.stack(per_image).mean(0), curves)


def random_logit(data: MetricInput, *, seed: int = 0) -> MetricResult:
    """Data/label sanity (Adebayo et al. 2018; Sixt et al. 2020): explain a random
    other class and compare with the map of the explained class by Spearman(|r|).
    Lower is better (a class-insensitive method scores 1)."""
    with torch.no_grad():
        classes = data.predict(data.inputs[:1]).shape[1]
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, classes, (len(data.targets),), generator=gen).to(data.targets.device)
    other = (data.targets + shift) % classes
    new = data.explain(data.model, data.inputs, other)
    return MetricResult(M.spearman(new.abs(), data.relevance.abs()))


# ------------------------------------------------------------ any model, no runner

def evaluate(model: Any, inputs: Any, relevance: Any, targets: Any = None, *,
             metrics: Sequence[str] = ("deletion_auc", "insertion_auc"), masks: Any = None,
             batch_size: int = 256, options: dict[str, dict[str, Any]] | None = None,
             method: Any = None, method_options: dict[str, Any] | None = None,
             explain: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             ) -> dict[str, MetricResult]:
    """Score maps with registered metrics on any model.

    Args:
        model: anything :func:`attribkit.as_predict` takes: a ``torch.nn.Module``,
            an ``onnxruntime.InferenceSession``, a NumPy callable, a ``Predict``.
        inputs: ``(B, C, H, W)`` images (tensor or array) in the model's input space.
        relevance: an :class:`~attribkit.result.Attribution` (its targets are
            used when ``targets`` is None) or ``(B, ...)`` maps, reduced to
            ``(B, H, W)`` pixel relevance.
        targets: the explained classes; default: the attribution's, else the top class.
        metrics: metric names (``attribkit metrics``). Those that re-explain
            (needs ``model`` / ``method``: robustness, randomisation, focus,
            input invariance) need a ``torch.nn.Module`` and ``method`` or ``explain``.
        masks: ``(B, H, W)`` boolean evidence masks for localisation metrics.
        batch_size: rows per model call (and per re-explanation).
        options: per-metric options, ``{"deletion_auc": {"steps": 16}}``.
        method: the attribution method that made ``relevance`` (a name or spec),
            for the metrics that re-explain; ``method_options`` are passed to it.
        explain: instead of ``method``, ``(model, inputs, targets) -> (B, h, w)``
            relevance (any tensor-returning callable).

    Returns ``{metric name: MetricResult}`` (one score per image, plus curves).
    """
    from attribkit.api import get_metric
    from attribkit.errors import InvalidOptionError
    from attribkit.perturbation.runner import as_batch
    from attribkit.predict import as_predict
    from attribkit.result import Attribution
    from attribkit.torch.checks import check_finite
    from attribkit.torch.guard import model_guard

    predict = as_predict(model, batch_size=batch_size)
    x = as_batch(inputs, image=True, model=predict.module)
    values = relevance.values if isinstance(relevance, Attribution) else relevance
    rel = M.pixel_relevance(torch.as_tensor(values).to(x.device), tuple(x.shape[-2:]))
    check_finite(rel, "relevance maps")
    if targets is None and isinstance(relevance, Attribution):
        targets = relevance.target
    specs = [get_metric(name) for name in metrics]
    explain_fn = _explainer(method, method_options or {}, explain, batch_size)
    for spec in specs:
        unmet = set(spec.needs) & {"model", "method"}
        if unmet and (predict.module is None or explain_fn is None):
            raise InvalidOptionError(
                f"metric {spec.name!r} re-explains: it needs a torch.nn.Module model and "
                "method= (or explain=)")
        if "ground_truth" in spec.needs and masks is None:
            raise InvalidOptionError(f"metric {spec.name!r} needs evidence masks: pass masks=")
    guard = (model_guard(predict.module, exclusive=False) if predict.module is not None
             else contextlib.nullcontext())
    with guard:
        if targets is None:
            targets = torch.as_tensor(predict(x)).argmax(1)
        data = MetricInput(predict=predict, inputs=x, relevance=rel,
                           targets=torch.as_tensor(targets).long().to(x.device),
                           masks=None if masks is None else torch.as_tensor(masks).bool().to(x.device),
                           model=predict.module, explain=explain_fn, batch_size=batch_size)
        return {spec.name: spec.load()(data, **spec.bind_options((options or {}).get(spec.name, {})))
                for spec in specs}


def _explainer(method: Any, method_options: dict[str, Any], explain: Callable | None,
               batch_size: int) -> Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``(model, inputs, targets) -> (B, H, W)`` pixel relevance at the inputs' size, from
    ``explain`` or from ``ak.explain(..., method=method)``; None when neither is given."""
    if explain is not None and method is not None:
        from attribkit.errors import InvalidOptionError

        raise InvalidOptionError("pass method= or explain=, not both")
    if explain is not None:
        def from_callable(model: Any, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            values = torch.as_tensor(explain(model, inputs, targets))
            return M.pixel_relevance(values.to(inputs.device), tuple(inputs.shape[-2:]))
        return from_callable
    if method is None:
        return None
    from attribkit.api import explain as ak_explain

    def from_method(model: Any, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = ak_explain(model, inputs, targets, method=method, batch_size=batch_size,
                            **method_options).values
        return M.pixel_relevance(torch.as_tensor(values).to(inputs.device), tuple(inputs.shape[-2:]))
    return from_method
