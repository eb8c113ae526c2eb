"""How metrics read the explained target from the model's raw output, for any target.

``MetricInput.targets`` holds one of:

- a ``(B,)`` tensor of class indices (an int, ints, ``None`` resolved to the top class,
  or ``ak.Class``): the metric reads ``(B, classes)`` scores (also from a dict or tuple,
  :func:`attribkit.targets.classes.class_scores`) and takes the class's logit or, with
  ``softmax``, its probability;
- a bound target object of :mod:`attribkit.targets` (``Region``, ``Box``, ``Similarity``,
  ``Labels`` rows) or a callable ``raw_output -> (n,)``: the metric reads
  :meth:`~attribkit.targets.Target.score` of the raw output through
  :class:`attribkit.torch.targets.ChunkTarget` (row ``k`` of a batch of copies belongs to
  image ``images[k]``); ``softmax`` does not apply (the target's score is the output).

Metrics that compare a classifier's classes (:data:`CLASS_METRICS`, :func:`needs_classes`)
refuse the second kind with a :class:`~attribkit.errors.TargetError`.
"""

from __future__ import annotations

from typing import Any

import torch

from attribkit.errors import TargetError
from attribkit.targets.classes import class_scores

#: metrics that read a classifier's predicted class or the logits of all classes
CLASS_METRICS = ("road", "sufficiency", "consistency", "random_logit", "focus",
                 "relative_output_stability", "relative_representation_stability")
#: metrics that need classes only with ``return_nan_when_prediction_changes=True``
PREDICTION_OPTION = "return_nan_when_prediction_changes"


def is_classes(targets: Any) -> bool:
    """Whether ``targets`` are class indices (a tensor), not a target object or callable."""
    return isinstance(targets, torch.Tensor)


def needs_classes(name: str, options: dict[str, Any]) -> bool:
    """Whether metric ``name`` with bound ``options`` reads a classifier's classes."""
    return name in CLASS_METRICS or bool(options.get(PREDICTION_OPTION, False))


def target_scores(raw: Any, targets: Any, images: torch.Tensor | None, *, softmax: bool,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``(n,)`` scores of ``n`` rows of raw model output, row ``k`` a copy of image
    ``images[k]`` (``None``: row ``k`` is image ``k``): the class's logit or softmax
    probability for class ``targets``, else the target object's or callable's score
    (``softmax`` ignored)."""
    if is_classes(targets):
        scores = class_scores(raw).to(dtype)
        if softmax:
            scores = scores.softmax(1)
        picked = targets.to(scores.device)
        if images is not None:
            picked = picked[images.to(scores.device)]
        return scores.gather(1, picked.view(-1, 1)).squeeze(1)
    from attribkit.torch.targets import ChunkTarget

    chunk = ChunkTarget(targets)
    picked = chunk.select(raw) if images is None else chunk.select_rows(raw, images)
    return picked.detach().to(dtype)


def count(targets: Any, inputs: torch.Tensor) -> int:
    """How many images ``targets`` are for (the inputs' rows)."""
    return len(targets) if is_classes(targets) else len(inputs)


def take(targets: Any, rows: torch.Tensor) -> Any:
    """The targets of images ``rows`` (a 1-D index tensor; repeats allowed), of the same
    kind: for re-explaining perturbed copies or chunks."""
    if is_classes(targets):
        return targets[rows.to(targets.device)]
    from attribkit.targets.base import Target

    if isinstance(targets, Target):
        return targets.take(rows.cpu())
    return targets  # a callable acts row by row


def split(targets: Any, n: int, size: int) -> list[Any]:
    """The targets of ``n`` images in consecutive chunks of ``size``."""
    return [take(targets, torch.arange(start, min(start + size, n))) for start in range(0, n, size)]


def predicted_classes(raw: Any) -> torch.Tensor:
    """``(n,)`` the top class of each row of a classifier's raw output (a tensor, a dict
    with ``logits``, a tuple; :class:`TargetError` naming what the model returned otherwise)."""
    return class_scores(torch.as_tensor(raw) if not _raw(raw) else raw).argmax(1)


def _raw(output: Any) -> bool:
    return isinstance(output, (torch.Tensor, dict, list, tuple)) or hasattr(output, "keys")


def class_indices(targets: Any, metric: str) -> torch.Tensor:
    """The class indices of ``targets``, or a :class:`TargetError` naming ``metric`` for
    a target object or callable."""
    if is_classes(targets):
        return targets
    raise TargetError(refusal(metric, targets))


def refusal(metric: str, targets: Any) -> str:
    """Why ``metric`` cannot score the target ``targets``."""
    from attribkit.targets.base import Target

    what = repr(targets) if isinstance(targets, Target) else "a callable target"
    return (f"metric {metric!r} compares a classifier's predicted classes (reads (B, classes) "
            f"outputs), and {what} is not a class target: pass an int or one class per image, "
            "or choose a metric that reads the target's score (docs/metrics.md, 'Target objects')")
