"""Token metrics: how well a text method's token values point at the evidence and
explain a classifier's score. Each metric is ``metric(data: TokenMetricInput, **options)
-> MetricResult`` with one score per text, and every perturbed text of a batch is scored
in the same forwards (``batch_size`` rows each).

Tokens are ranked by value, highest first (ties: the earlier token first); only the
*candidate* tokens are ranked and removed: the real tokens that carry a value, less the
tokenizer's special tokens (``[CLS]``, ``[SEP]`` stay in every perturbed text). The
score is the explained class's probability (``score="prob"``, softmax over the
classes, as ERASER) or its logit (``"logit"``).

- ``token_pointing_game``: 1 when the top token is evidence, else 0.
- ``token_rank_accuracy``: the share of the top-``k`` tokens that are evidence,
  ``k`` = the number of evidence tokens.
- ``eraser_comprehensiveness`` / ``eraser_sufficiency`` (DeYoung et al. 2020, ERASER): the drop
  ``f(x) - f(x \\ r)`` when the top ``ceil(p n)`` tokens ``r`` are removed / the drop
  ``f(x) - f(r)`` when only they are kept, averaged over the bins ``p`` = 1, 5, 10,
  20, 50 % (ERASER's AOPC). Removed tokens are deleted, as in ERASER (the text gets
  shorter; ``removal="replace"``: replaced by the baseline token instead). A text
  left with no token keeps one baseline token.
- ``token_deletion_aopc`` / ``token_insertion_aopc``: the top ``k`` tokens replaced by
  the baseline token for ``k = 0 .. n`` (every token, or ``steps`` even steps), and
  the mean of ``f(x) - f(x_k)`` (deletion: higher is better) / of ``f(x^k) - f(x^0)``
  where ``x^k`` keeps only the top ``k`` tokens, the others baseline (insertion).

A score that is undefined for a text (its values are constant over its candidates, so
their order is arbitrary; no evidence token for the ground-truth metrics) is NaN with a
:class:`~attribkit.errors.MetricWarning` naming the metric, the texts and why.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch

from attribkit.errors import InvalidOptionError, MetricWarning
from attribkit.evaluation.base import MetricResult
from attribkit.text.inputs import right_padded
from attribkit.text.targets import read_logits

ERASER_BINS = (0.01, 0.05, 0.1, 0.2, 0.5)
SCORES = ("prob", "logit")
REMOVALS = ("delete", "replace")


@dataclasses.dataclass
class TokenMetricInput:
    """What a token metric gets.

    Attributes:
        model: a :class:`~attribkit.text.model.TextModel` (``model(ids, mask)`` -> raw output).
        ids: ``(B, T)`` token ids, right-padded; ``mask``: ``(B, T)`` bool, real tokens.
        candidates: ``(B, T)`` bool, the tokens ranked and removed (real, with a value,
            not special).
        values: ``(B, T)`` the method's token values.
        targets: ``(B,)`` the explained classes.
        evidence: ``(B, T)`` bool, the evidence tokens, when ground truth exists.
        baseline_id: the token that replaces removed ones (the tokenizer's pad token).
        pad_id: the id that fills padding.
        batch_size: rows per forward.
    """

    model: Any
    ids: torch.Tensor
    mask: torch.Tensor
    candidates: torch.Tensor
    values: torch.Tensor
    targets: torch.Tensor
    evidence: torch.Tensor | None = None
    baseline_id: int = 0
    pad_id: int = 0
    batch_size: int = 256


# ------------------------------------------------------------------ ranking
def ranks(data: TokenMetricInput) -> torch.Tensor:
    """``(B, T)`` the rank of each candidate token by value (0: the highest; ties: the
    earlier token first); non-candidates rank after every candidate."""
    keyed = data.values.double().masked_fill(~data.candidates, -math.inf)
    order = torch.sort(keyed, dim=1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return rank


def top_k(rank: torch.Tensor, candidates: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``(R, T)`` bool: the ``k[r]`` best-ranked candidates of each row."""
    return (rank < k[:, None]) & candidates


# ------------------------------------------------------------------ scoring
def score_rows(data: TokenMetricInput, text: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor,
               score: str) -> torch.Tensor:
    """The explained class's score (``prob`` or ``logit``) on each row ``(ids, mask)``, row
    ``r`` read for the class of text ``text[r]``; ``batch_size`` rows per forward."""
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), data.batch_size):
            sl = slice(start, start + data.batch_size)
            width = int(mask[sl].sum(1).max())
            logits = read_logits(data.model(ids[sl, :width], mask[sl, :width])).float()
            if logits.ndim != 2:
                raise InvalidOptionError(f"token metrics score a classifier's (B, C) scores; the model "
                                         f"returns {tuple(logits.shape)}")
            if score == "prob":
                logits = logits.softmax(1)
            out.append(logits.gather(1, data.targets[text[sl]][:, None]).squeeze(1))
    return torch.cat(out).double().cpu()


def perturbed(data: TokenMetricInput, text: torch.Tensor, remove: torch.Tensor, removal: str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of texts ``text`` with the tokens ``remove`` (``(R, T)`` bool) deleted (the rest
    moved left; a row left empty keeps one baseline token) or replaced by the baseline token."""
    ids, mask = data.ids[text], data.mask[text]
    if removal == "replace":
        return ids.masked_fill(remove, data.baseline_id), mask
    keep = mask & ~remove
    empty = ~keep.any(1)
    ids = torch.where(empty[:, None] & (torch.arange(ids.shape[1], device=ids.device) == 0), data.baseline_id, ids)
    keep[:, 0] |= empty
    return right_padded(ids, keep, data.pad_id)


def _check(options: dict[str, tuple[Any, Sequence[str]]]) -> None:
    for name, (value, allowed) in options.items():
        if value not in allowed:
            raise InvalidOptionError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _counts(data: TokenMetricInput) -> torch.Tensor:
    return data.candidates.sum(1)


def undefined(name: str, scores: torch.Tensor, reasons: dict[str, torch.Tensor]) -> torch.Tensor:
    """``scores`` with NaN on the texts of any of ``reasons`` (``why -> (B,) bool``), and a
    :class:`MetricWarning` naming the metric, the texts and why."""
    bad = torch.zeros(len(scores), dtype=torch.bool)
    for hit in reasons.values():
        bad |= hit.cpu()
    if not bool(bad.any()):
        return scores
    why = "; ".join(f"{w} ({', '.join(map(str, h.nonzero().flatten().tolist()[:10]))})"
                    for w, h in reasons.items() if bool(h.any()))
    warnings.warn(MetricWarning(f"metric {name!r} is undefined (NaN) for text(s) "
                                f"{', '.join(map(str, bad.nonzero().flatten().tolist()[:10]))}: {why}"),
                  stacklevel=3)
    return scores.masked_fill(bad, float("nan"))


def _constant(data: TokenMetricInput) -> torch.Tensor:
    """Texts whose values are constant over their candidates (two or more), or that have none."""
    v = data.values.double()
    hi = v.masked_fill(~data.candidates, -math.inf).amax(1)
    lo = v.masked_fill(~data.candidates, math.inf).amin(1)
    return ~(hi > lo) & (_counts(data) != 1)


def _ranking_undefined(name: str, data: TokenMetricInput, scores: torch.Tensor,
                       evidence: bool = False) -> torch.Tensor:
    reasons = {"its values are constant over its tokens": _constant(data)}
    if evidence:
        reasons["it has no evidence token"] = ~(data.evidence & data.candidates).any(1)
    return undefined(name, scores, reasons)


# ------------------------------------------------------------------ ground truth
def token_pointing_game(data: TokenMetricInput) -> MetricResult:
    """1 when the text's top token is evidence, else 0."""
    first = ranks(data) == 0
    hit = (first & data.candidates & data.evidence).any(1).double().cpu()
    return MetricResult(_ranking_undefined("token_pointing_game", data, hit, evidence=True))


def token_rank_accuracy(data: TokenMetricInput) -> MetricResult:
    """The share of the top-``k`` tokens that are evidence, ``k`` = the text's evidence tokens."""
    evidence = data.evidence & data.candidates
    k = evidence.sum(1)
    top = top_k(ranks(data), data.candidates, k)
    share = (top & evidence).sum(1).double() / k.clamp(min=1).double()
    return MetricResult(_ranking_undefined("token_rank_accuracy", data, share.cpu(), evidence=True))


# ------------------------------------------------------------------ ERASER
def _eraser(data: TokenMetricInput, name: str, keep_top: bool, bins: Sequence[float], removal: str,
            score: str) -> MetricResult:
    _check({"removal": (removal, REMOVALS), "score": (score, SCORES)})
    bins = tuple(float(b) for b in bins)
    if not bins or not all(0 < b <= 1 for b in bins):
        raise InvalidOptionError(f"bins must be fractions in (0, 1], got {bins}")
    b = len(data.ids)
    rank, n = ranks(data), _counts(data)
    text = torch.arange(b, device=data.ids.device).repeat(len(bins))
    k = torch.cat([torch.ceil(n.double() * p).long().clamp(min=1) for p in bins])
    top = top_k(rank[text], data.candidates[text], k)
    remove = (data.candidates[text] & ~top) if keep_top else top
    ids, mask = perturbed(data, text, remove, removal)
    full = torch.arange(b, device=data.ids.device)
    scores = score_rows(data, torch.cat([full, text]), torch.cat([data.ids, ids]), torch.cat([data.mask, mask]),
                        score)
    drop = scores[:b].repeat(len(bins)) - scores[b:]
    per_bin = drop.view(len(bins), b)
    result = per_bin.mean(0)
    curves = {"bins": list(bins), "mean": [float(v) for v in per_bin.nanmean(1)]}
    return MetricResult(_ranking_undefined(name, data, result), curves)


def eraser_comprehensiveness(data: TokenMetricInput, bins: Sequence[float] = ERASER_BINS,
                             removal: str = "delete", score: str = "prob") -> MetricResult:
    """ERASER comprehensiveness (AOPC over ``bins``): ``f(x) - f(x \\ top p%)``; higher is better."""
    return _eraser(data, "eraser_comprehensiveness", False, bins, removal, score)


def eraser_sufficiency(data: TokenMetricInput, bins: Sequence[float] = ERASER_BINS,
                       removal: str = "delete", score: str = "prob") -> MetricResult:
    """ERASER sufficiency (AOPC over ``bins``): ``f(x) - f(top p% only)``; lower is better."""
    return _eraser(data, "eraser_sufficiency", True, bins, removal, score)


# ------------------------------------------------------------------ deletion / insertion
def _steps(n: torch.Tensor, steps: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(text, k)`` of every step of every text, text-major, ``k = 0`` first: ``k = 0 .. n``
    (``steps=None``) or ``round(j n / steps)`` for ``j = 0 .. steps``."""
    if steps is None:
        text = torch.repeat_interleave(torch.arange(len(n), device=n.device), n + 1)
        start = torch.cumsum(n + 1, 0) - (n + 1)
        return text, torch.arange(len(text), device=n.device) - start[text]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise InvalidOptionError(f"steps must be a positive int or None, got {steps!r}")
    j = torch.arange(steps + 1, device=n.device, dtype=torch.float64)
    k = torch.round(n[:, None].double() * j[None] / steps).long()
    return torch.arange(len(n), device=n.device).repeat_interleave(steps + 1), k.flatten()


def _curve(data: TokenMetricInput, name: str, insertion: bool, steps: int | None, score: str) -> MetricResult:
    _check({"score": (score, SCORES)})
    text, k = _steps(_counts(data), steps)
    top = top_k(ranks(data)[text], data.candidates[text], k)
    remove = (data.candidates[text] & ~top) if insertion else top
    ids, mask = perturbed(data, text, remove, "replace")
    f = score_rows(data, text, ids, mask, score)
    text, k = text.cpu(), k.cpu()
    reference = torch.zeros(len(data.ids), dtype=torch.float64).index_copy_(0, text[k == 0], f[k == 0])[text]
    # reference: f at k = 0, i.e. f(x) for deletion, f(all baseline) for insertion
    gain = f - reference if insertion else reference - f
    total = torch.zeros(len(data.ids), dtype=torch.float64).index_add_(0, text, gain)
    count = torch.bincount(text, minlength=len(data.ids)).double()
    return MetricResult(_ranking_undefined(name, data, total / count))


def token_deletion_aopc(data: TokenMetricInput, steps: int | None = None, score: str = "prob") -> MetricResult:
    """Mean drop ``f(x) - f(x_k)`` as the top ``k`` tokens are replaced by the baseline token."""
    return _curve(data, "token_deletion_aopc", False, steps, score)


def token_insertion_aopc(data: TokenMetricInput, steps: int | None = None, score: str = "prob") -> MetricResult:
    """Mean rise ``f(x^k) - f(x^0)`` as the top ``k`` tokens are put back into an all-baseline text."""
    return _curve(data, "token_insertion_aopc", True, steps, score)
