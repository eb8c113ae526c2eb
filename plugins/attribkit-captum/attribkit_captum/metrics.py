"""Captum's ``infidelity`` and ``sensitivity_max`` on attribkit results.

Both take ``(model, inputs, attribution, target=None)`` where ``attribution`` is
an :class:`attribkit.result.Attribution` (from any method, built-in or plugin)
and return one value per image, a ``(B,)`` tensor; lower is better for both.
``target=None`` reuses the classes the attribution explained
(``attribution.target``), or its callable target.

The plugin's ``register_metrics`` hook registers them for ``attribkit bench``
as ``captum.infidelity`` and ``captum.sensitivity_max`` through the adapters
:func:`infidelity_metric` and :func:`sensitivity_max_metric`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from attribkit.errors import InputError
from attribkit.result import Attribution
from attribkit.torch.guard import model_guard
from attribkit.torch.targets import parse_target
from attribkit_captum import import_captum
from attribkit_captum.guards import module_attributes_kept, seeded


def _resolve_target(attribution: Attribution | None, target: Any, batch: int) -> Any:
    """An int tensor (B,), a row-wise callable, or None (top class)."""
    if target is None and attribution is not None:
        target = attribution.target
        if target is None:
            target = attribution.meta.get("target_fn")
    return parse_target(target, batch)


def _scores_forward(model: Any, target: Any):
    """``(forward, captum_target)``: the model with class indices, or a selecting forward."""
    if callable(target) and not isinstance(target, torch.Tensor):
        return (lambda x: target(model(x))), None
    return model, target


def attribution_like_inputs(attribution: Attribution | torch.Tensor,
                            inputs: torch.Tensor) -> torch.Tensor:
    """The attribution values at the inputs' shape: layer maps are summed over
    channels (unless single-channel), upsampled bilinearly to ``H, W`` and
    broadcast over the input channels."""
    values = attribution.values if isinstance(attribution, Attribution) else attribution
    values = torch.as_tensor(values).to(device=inputs.device, dtype=inputs.dtype)
    if values.shape == inputs.shape:
        return values
    if values.ndim != 4 or inputs.ndim != 4 or len(values) != len(inputs):
        raise InputError(
            f"attribution of shape {tuple(values.shape)} cannot be compared with inputs of "
            f"shape {tuple(inputs.shape)}"
        )
    if values.shape[1] not in (1, inputs.shape[1]):
        values = values.sum(1, keepdim=True)
    if values.shape[-2:] != inputs.shape[-2:]:
        values = F.interpolate(values, size=inputs.shape[-2:], mode="bilinear",
                               align_corners=False)
    return values.expand_as(inputs).contiguous()


def infidelity(model: Any, inputs: torch.Tensor, attribution: Attribution | torch.Tensor,
               target: Any = None, *, n_perturb_samples: int = 10, stdev: float = 0.05,
               normalize: bool = False, max_examples_per_batch: int | None = None,
               seed: int | None = 0) -> torch.Tensor:
    """Captum's ``infidelity``: ``E[(I^T attr - (f(x) - f(x - I)))^2]`` over Gaussian
    perturbations ``I`` with standard deviation ``stdev`` times each image's value
    range (Yeh et al. 2019, On the (In)fidelity and Sensitivity of Explanations,
    arXiv:1901.09392). ``(B,)``, lower is better; ``normalize=True`` rescales the
    attribution by the best least-squares factor first (Captum's option)."""
    import_captum()
    from captum.metrics import infidelity as captum_infidelity

    x = inputs.detach()
    parsed = _resolve_target(attribution if isinstance(attribution, Attribution) else None,
                             target, len(x))
    attr = attribution_like_inputs(attribution, x)
    flat = x.flatten(1)
    scale = (stdev * (flat.amax(1) - flat.amin(1))).view(-1, *[1] * (x.ndim - 1))

    def perturb(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Captum repeats each image n_perturb_samples times (repeat_interleave).
        per_row = scale.repeat_interleave(len(batch) // len(x), dim=0)
        noise = torch.randn_like(batch) * per_row
        return noise, batch - noise

    with model_guard(model), module_attributes_kept(model), seeded(seed, x.device), \
            torch.no_grad():
        if parsed is None:
            from attribkit.torch.targets import ChunkTarget

            parsed = ChunkTarget(None).indices_for(model(x))
        forward, captum_target = _scores_forward(model, parsed)
        if isinstance(captum_target, torch.Tensor):
            captum_target = captum_target.to(x.device)
        return captum_infidelity(forward, perturb, x, attr, target=captum_target,
                                 n_perturb_samples=n_perturb_samples,
                                 max_examples_per_batch=max_examples_per_batch,
                                 normalize=normalize).detach()


def sensitivity_max(model: Any, inputs: torch.Tensor, attribution: Attribution,
                    target: Any = None, *, perturb_radius: float = 0.02,
                    n_perturb_samples: int = 10, norm_ord: str = "fro",
                    max_examples_per_batch: int | None = None,
                    seed: int | None = 0) -> torch.Tensor:
    """Captum's ``sensitivity_max``: the largest relative change of the explanation
    (``attribution.method`` with the same layer and options, re-run through
    ``ak.explain``) under uniform input perturbations of radius ``perturb_radius``
    (Yeh et al. 2019, arXiv:1901.09392). ``(B,)``, lower is better."""
    import_captum()
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    import attribkit as ak

    if not isinstance(attribution, Attribution):
        raise InputError("sensitivity_max needs the Attribution returned by ak.explain "
                         "(it re-runs the same method)")
    x = inputs.detach()
    parsed = _resolve_target(attribution, target, len(x))
    options = dict(attribution.meta.get("options", {}))
    tunnel = attribution.meta.get("noise_tunnel")
    extra: dict[str, Any] = {}
    if tunnel is not None:
        from attribkit.torch.noise import NoiseTunnel

        extra["noise_tunnel"] = NoiseTunnel(**tunnel)

    def explanation(batch: Any, target: Any = None) -> Any:
        # Captum passes 1-tuples and expects tuples back for them
        packed = isinstance(batch, (tuple, list))
        values = ak.explain(model, batch[0] if packed else batch, target,
                            method=attribution.method, layer=attribution.layer, **extra,
                            **options).values
        return (values,) if packed else values

    if parsed is None:
        with model_guard(model), torch.no_grad():
            from attribkit.torch.targets import ChunkTarget

            parsed = ChunkTarget(None).indices_for(model(x)).cpu()
    with seeded(seed, x.device):
        return captum_sensitivity_max(explanation, x, perturb_radius=perturb_radius,
                                      n_perturb_samples=n_perturb_samples, norm_ord=norm_ord,
                                      max_examples_per_batch=max_examples_per_batch,
                                      target=parsed).detach()


def infidelity_metric(data: Any, **options: Any) -> Any:
    """:func:`infidelity` on a benchmark :class:`attribkit.evaluation.base.MetricInput`
    (its ``(B, H, W)`` relevance spread over the input channels)."""
    from attribkit.evaluation.base import MetricResult

    relevance = data.relevance[:, None] / data.inputs.shape[1]
    return MetricResult(infidelity(data.model if data.model is not None else data.predict,
                                   data.inputs, relevance, data.targets, **options))


def sensitivity_max_metric(data: Any, *, perturb_radius: float = 0.02, n_perturb_samples: int = 10,
                           norm_ord: str = "fro", max_examples_per_batch: int | None = None,
                           seed: int | None = 0) -> Any:
    """:func:`sensitivity_max` on a benchmark input: the method is re-run through
    ``data.explain`` on the perturbed images."""
    import_captum()
    from captum.metrics import sensitivity_max as captum_sensitivity_max

    from attribkit.evaluation.base import MetricResult

    def explanation(batch: Any, target: Any = None) -> Any:
        packed = isinstance(batch, (tuple, list))
        values = data.explain(data.model, batch[0] if packed else batch, target)
        return (values,) if packed else values

    with seeded(seed, data.inputs.device):
        scores = captum_sensitivity_max(explanation, data.inputs.detach(), perturb_radius=perturb_radius,
                                        n_perturb_samples=n_perturb_samples, norm_ord=norm_ord,
                                        max_examples_per_batch=max_examples_per_batch,
                                        target=data.targets)
    return MetricResult(scores.detach())
