"""``ak.evaluate`` on a :class:`~attribkit.text.result.TokenAttribution`: the token
metrics (:mod:`attribkit.evaluation.tokens`), every argument checked before any forward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from attribkit.errors import InputError, InvalidOptionError, TargetError
from attribkit.evaluation.base import MetricResult
from attribkit.evaluation.tokens import TokenMetricInput


def evaluate_tokens(model: Any, inputs: Any, result: Any, targets: Any = None, *, metrics: Sequence[str],
                    tokenizer: Any = None, evidence: Any = None, baseline: int | None = None,
                    embedding: Any = None, batch_size: int = 256,
                    options: dict[str, dict[str, Any]] | None = None) -> dict[str, MetricResult]:
    """Score the token values of ``result`` (a ``TokenAttribution`` of a classifier) with
    token metrics; ``inputs`` are the texts (or ids) given to ``explain``, with its
    ``tokenizer``; ``evidence`` ``(B, T)`` bool (or 0/1) in the result's token layout, or
    one list of token positions per text; ``baseline``: the token id that replaces
    removed tokens (default: the tokenizer's pad token, else 0). See ``ak.evaluate``."""
    from attribkit.api import get_metric
    from attribkit.text.inputs import text_batch
    from attribkit.text.model import TextModel
    from attribkit.torch.guard import model_guard

    specs = [get_metric(name) for name in metrics]
    names = ", ".join(s.name for s in specs)
    image = [s.name for s in specs if "tokens" not in s.needs]
    if image:
        raise InvalidOptionError(f"metric(s) {', '.join(map(repr, image))} score image maps, not token "
                                 "attributions; token metrics: " + ", ".join(token_metric_names()))
    if result.meta.get("kind") not in (None, "class"):
        raise TargetError(f"token metrics ({names}) score a classifier's class; this attribution explains "
                          f"a {result.meta.get('kind')} target")
    text_model = TextModel(model, embedding)
    batch = text_batch(inputs, tokenizer, device=text_model.device)
    values = torch.as_tensor(result.values).detach()
    if values.ndim != 2 or values.shape != batch.ids.shape:
        raise InputError(f"the attribution's values are {tuple(values.shape)} but the inputs give "
                         f"{tuple(batch.ids.shape)} tokens ({names}): pass the texts given to explain")
    if result.tokens and list(result.tokens) != list(batch.tokens):
        bad = next(i for i, (a, b) in enumerate(zip(result.tokens, batch.tokens)) if a != b)
        raise InputError(f"text {bad} is not the one explained: its tokens differ from the attribution's ({names})")
    if not bool(torch.isfinite(values).all()):
        raise InputError(f"the attribution's values are not finite ({names})")
    device = text_model.device
    classes = _classes(targets if targets is not None else result.target, len(batch), device, names)
    keep = torch.as_tensor(result.mask).bool().to(device) if result.mask is not None else batch.mask
    candidates = batch.mask & keep & ~batch.special
    masks = _evidence(evidence, batch.ids.shape, names)
    for spec in specs:
        if "ground_truth" in spec.needs and masks is None:
            raise InvalidOptionError(f"metric {spec.name!r} needs the evidence tokens: pass evidence=")
    bound = [spec.bind_options((options or {}).get(spec.name, {})) for spec in specs]
    base = batch.pad_id if baseline is None else int(baseline)
    with model_guard(model, exclusive=False):
        logits = _logits(text_model, batch, names)
        bad = (classes < 0) | (classes >= logits.shape[1])
        if bool(bad.any()):
            raise TargetError(f"target {int(classes[bad][0])} is out of range: the model has "
                              f"{logits.shape[1]} classes ({names})")
        data = TokenMetricInput(model=text_model, ids=batch.ids, mask=batch.mask, candidates=candidates,
                                values=values.to(device), targets=classes,
                                evidence=None if masks is None else masks.to(device),
                                baseline_id=base, pad_id=batch.pad_id, batch_size=batch_size)
        out = {}
        for spec, opts in zip(specs, bound):
            out[spec.name] = spec.load()(data, **opts)
        return out


def token_metric_names() -> list[str]:
    """The registered metrics that score token attributions."""
    from attribkit.api import metrics

    return [m.name for m in metrics() if "tokens" in m.needs]


def _logits(model: Any, batch: Any, names: str) -> torch.Tensor:
    from attribkit.text.targets import read_logits

    with torch.no_grad():
        logits = read_logits(model(batch.ids[:1], batch.mask[:1]))
    if logits.ndim != 2:
        raise TargetError(f"token metrics ({names}) score a classifier's (B, C) scores; the model returns "
                          f"{tuple(logits.shape)}")
    return logits


def _classes(targets: Any, n: int, device: torch.device, names: str) -> torch.Tensor:
    if targets is None:
        raise TargetError(f"token metrics ({names}) need the explained classes: the attribution has none, "
                          "pass targets=")
    classes = torch.as_tensor(targets).reshape(-1)
    if classes.is_floating_point() or classes.dtype == torch.bool:
        raise TargetError(f"targets must be class indices, got {classes.dtype} ({names})")
    if classes.numel() == 1:
        classes = classes.expand(n)
    if classes.numel() != n:
        raise TargetError(f"{classes.numel()} targets for {n} texts ({names})")
    return classes.long().to(device)


def _evidence(evidence: Any, shape: torch.Size, names: str) -> torch.Tensor | None:
    if evidence is None:
        return None
    b, t = shape
    if isinstance(evidence, (list, tuple)) and len(evidence) == b and all(
            isinstance(e, (list, tuple)) for e in evidence):
        masks = torch.zeros(b, t, dtype=torch.bool)
        for i, positions in enumerate(evidence):
            for p in positions:
                if not 0 <= int(p) < t:
                    raise InputError(f"evidence position {p} of text {i} is outside its {t} tokens ({names})")
                masks[i, int(p)] = True
        return masks
    masks = torch.as_tensor(evidence)
    if masks.shape != (b, t):
        raise InputError(f"evidence must be (B, T) = ({b}, {t}) in the attribution's token layout, got "
                         f"{tuple(masks.shape)} ({names})")
    if masks.dtype != torch.bool:
        if not bool(((masks == 0) | (masks == 1)).all()):
            raise InputError(f"evidence must be bool or 0/1 ({names})")
        masks = masks != 0
    return masks.cpu()
