"""``ak.evaluate``: score attribution maps with registered metrics on any model."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from attribkit.evaluation import functional as M
from attribkit.evaluation.base import MetricInput, MetricResult


def evaluate(model: Any, inputs: Any, relevance: Any, targets: Any = None, *,
             metrics: Sequence[str] = ("deletion_auc", "insertion_auc"), masks: Any = None,
             boxes: Any = None, batch_size: int = 256, options: dict[str, dict[str, Any]] | None = None,
             method: Any = None, method_options: dict[str, Any] | None = None,
             explain: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
             tokenizer: Any = None, evidence: Any = None,
             ) -> dict[str, MetricResult]:
    """Score maps with registered metrics on any model.

    Args:
        model: anything :func:`attribkit.as_predict` takes: a ``torch.nn.Module``,
            an ``onnxruntime.InferenceSession``, a NumPy callable, a ``Predict``, a JAX/Flax
            or Keras 3 model (``docs/frameworks.md``; its images ``(B, H, W, C)``).
        inputs: ``(B, C, H, W)`` images (tensor or array) in the model's input space,
            checked as ``ak.explain`` checks them, at least 2 pixels: the images
            given to ``explain``. When the attribution has rows of several per image
            (``meta["image_index"]``: ``Labels([3, 7])``, several boxes per image),
            row ``r`` is scored on ``inputs[image_index[r]]``.
        relevance: an :class:`~attribkit.result.Attribution` (its target is used when
            ``targets`` is None) or maps, one per row: ``(R, H, W)``,
            ``(R, 1, H, W)`` or ``(R, C, H, W)`` (channels summed) at the images'
            size, or smaller layer maps of the same aspect ratio (upsampled
            bilinearly); finite.
        targets: what was explained: the classes (one int, or one per image, in the
            model's range), a callable ``raw_output -> (n,)`` or a target object of
            :mod:`attribkit.targets` (``Class``, ``Labels``, ``Region``, ``Box``,
            ``Similarity``; one that explains several things per image is expanded as
            ``explain`` expands it). Default: the attribution's (its bound target object,
            ``meta["target"]``, else its classes), else the top class. Metrics score the
            model's output through it: perturbed copies of image ``k`` by
            ``Target.score``; the ``softmax`` option applies to class targets only, and
            the metrics that compare a classifier's classes refuse other targets
            (``docs/metrics.md``, 'Target objects').
        metrics: metric names (``attribkit metrics``). Those that re-explain
            (needs ``model`` / ``method``: robustness, randomisation, focus,
            input invariance) need a ``torch.nn.Module`` and ``method`` or ``explain``.
        masks: ``(R, H, W)`` (or ``(R, 1, H, W)``) bool or 0/1 evidence masks for the
            localisation metrics, one per row (or one per image, indexed by the
            attribution's ``image_index``); a ``MetricWarning`` when none of ``metrics``
            reads them.
        boxes: instead of ``masks``, evidence boxes x1y1x2y2 in pixels: ``(R, 4)``, ``(4,)``
            or a list of ``(K_i, 4)`` per image (the rows of ``ak.Box`` with several
            boxes), made into masks by :func:`attribkit.evaluation.localisation.box_masks`.
        batch_size: rows per model call (and per re-explanation).
        options: per-metric options, ``{"deletion_auc": {"steps": 16}}``.
        method: the attribution method that made ``relevance`` (a name or spec),
            for the metrics that re-explain; ``method_options`` are passed to it.
        explain: instead of ``method``, ``(model, inputs, targets) -> (B, h, w)``
            relevance (any tensor-returning callable).

    Token attributions (a :class:`~attribkit.text.result.TokenAttribution` as ``relevance``,
    ``inputs`` the texts given to ``explain`` with its ``tokenizer``) are scored by the
    token metrics (:mod:`attribkit.evaluation.tokens`, ``docs/metrics.md``), with
    ``evidence`` (or ``masks``): ``(B, T)`` evidence tokens in the result's layout.

    Every argument is checked before any work: a bad one raises an
    :class:`~attribkit.errors.AttribkitError` naming it, the shapes and the metrics
    (:mod:`attribkit.evaluation.checks`). A score a metric cannot define for an
    image (an empty mask, a constant map for a metric that ranks pixels, ...) is
    NaN, with a :class:`~attribkit.errors.MetricWarning` naming the metric, the
    images and why.

    Returns ``{metric name: MetricResult}`` (one score per image, plus curves).
    """
    from attribkit.api import get_metric
    from attribkit.errors import InvalidOptionError
    from attribkit.evaluation import checks
    from attribkit.perturbation.runner import as_batch
    from attribkit.predict import as_predict
    from attribkit.result import Attribution
    from attribkit.torch.guard import model_guard

    from attribkit.text.result import TokenAttribution

    if isinstance(inputs, TokenAttribution) and not isinstance(relevance, TokenAttribution):
        inputs, relevance = relevance, inputs  # ak.evaluate(model, result, texts) reads as well
    if isinstance(relevance, TokenAttribution):
        from attribkit.evaluation.token_api import evaluate_tokens

        return evaluate_tokens(model, inputs, relevance, targets, metrics=metrics, tokenizer=tokenizer,
                               evidence=evidence if evidence is not None else masks, batch_size=batch_size,
                               options=options)
    specs = [get_metric(name) for name in metrics]
    names = [spec.name for spec in specs]
    tokens = [spec.name for spec in specs if "tokens" in spec.needs]
    if tokens:
        raise InvalidOptionError(f"metric(s) {', '.join(map(repr, tokens))} score token attributions: pass the "
                                 "TokenAttribution of ak.explain on text as relevance")
    if tokenizer is not None or evidence is not None:
        raise InvalidOptionError("tokenizer= and evidence= go with a TokenAttribution (text); image maps take "
                                 "masks= or boxes=")
    predict = as_predict(model, batch_size=batch_size)
    if predict.model_layout == "NHWC":  # a JAX/Keras model: its images arrive channel-last
        from attribkit.backends.layout import channels_first
        from attribkit.backends.run import as_array

        inputs = np.ascontiguousarray(channels_first(as_array(inputs), "NHWC"))
    x = as_batch(inputs, image=True, model=predict.module)
    checks.check_image_size(x, names)
    attribution = relevance if isinstance(relevance, Attribution) else None
    x, targets, image_index = checks.target_rows(x, targets, attribution, names)
    rel = checks.relevance_maps(relevance.values if attribution is not None else relevance, x, names)
    if masks is not None and boxes is not None:
        raise InvalidOptionError("pass masks= or boxes=, not both")
    if boxes is not None:
        masks = checks.evidence_boxes(boxes, x, names)
    if masks is not None:
        masks = checks.evidence_masks(masks, x, names, image_index)
        checks.warn_unused_masks(specs)
    explain_fn = _explainer(method, method_options or {}, explain, batch_size)
    bound = []
    for spec in specs:
        unmet = set(spec.needs) & {"model", "method"}
        if unmet and (predict.module is None or explain_fn is None):
            raise InvalidOptionError(
                f"metric {spec.name!r} re-explains: it needs a torch.nn.Module model and "
                "method= (or explain=)")
        if "ground_truth" in spec.needs and masks is None:
            raise InvalidOptionError(f"metric {spec.name!r} needs evidence masks: pass masks=")
        bound.append(spec.bind_options((options or {}).get(spec.name, {})))
    checks.refuse_class_metrics(targets, specs, bound, names)
    guard = (model_guard(predict.module, exclusive=False) if predict.module is not None
             else contextlib.nullcontext())
    with guard:
        data = MetricInput(predict=predict, inputs=x, relevance=rel,
                           targets=checks.metric_targets(targets, predict, x, names), masks=masks,
                           model=predict.module, explain=explain_fn, batch_size=batch_size)
        out = {}
        for spec, opts in zip(specs, bound):  # a loop, not a comprehension: the warnings' stack level
            out[spec.name] = checks.run_metric(spec, data, opts)
        return out


def _explainer(method: Any, method_options: dict[str, Any], explain: Callable | None,
               batch_size: int) -> Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``(model, inputs, targets) -> (B, H, W)`` pixel relevance at the inputs' size, from
    ``explain`` or from ``ak.explain(..., method=method)``; None when neither is given."""
    if explain is not None and method is not None:
        from attribkit.errors import InvalidOptionError

        raise InvalidOptionError("pass method= or explain=, not both")
    if explain is not None:
        def from_callable(model: Any, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            values = torch.as_tensor(explain(model, inputs, _per_image(targets, inputs)))
            return M.pixel_relevance(values.to(inputs.device), tuple(inputs.shape[-2:]))
        return from_callable
    if method is None:
        return None
    from attribkit.api import explain as ak_explain

    def from_method(model: Any, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        values = ak_explain(model, inputs, _per_image(targets, inputs), method=method, batch_size=batch_size,
                            **method_options).values
        return M.pixel_relevance(torch.as_tensor(values).to(inputs.device), tuple(inputs.shape[-2:]))
    return from_method


def _per_image(targets: Any, inputs: torch.Tensor) -> Any:
    """One target per image: a single one is repeated (Captum's ``sensitivity_max``
    passes a batch of one image's target with its perturbed copies)."""
    if isinstance(targets, torch.Tensor) and targets.numel() == 1 and len(inputs) > 1:
        return targets.reshape(1).expand(len(inputs))
    return targets
