"""``ak.evaluate``: score attribution maps with registered metrics on any model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import torch

from attribkit.evaluation import functional as M
from attribkit.evaluation.base import MetricInput, MetricResult


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
