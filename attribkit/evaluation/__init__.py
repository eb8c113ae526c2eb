"""The metric suite: how faithful, robust, localised and simple an attribution is.

One module per group of Quantus's taxonomy, each metric a function
``metric(data: MetricInput, **options) -> MetricResult`` batched on the device:

- :mod:`~attribkit.evaluation.faithfulness`: removal curves (deletion / insertion,
  pixel flipping, region perturbation, selectivity, monotonicity, IROF, ROAD);
  :mod:`~attribkit.evaluation.faithfulness_correlation`: correlations of relevance
  with output changes (faithfulness correlation / estimate, monotonicity
  correlation, sensitivity-n, infidelity, sufficiency);
- :mod:`~attribkit.evaluation.robustness`: Lipschitz estimate, sensitivities,
  continuity, relative input / output / representation stabilities, consistency;
- :mod:`~attribkit.evaluation.localisation`: pointing game, relevance mass / rank,
  attribution localisation, top-k intersection, ROC AUC, Focus;
- :mod:`~attribkit.evaluation.complexity`: sparseness, complexity, effective complexity;
- :mod:`~attribkit.evaluation.randomisation`: cascading randomisation, random logit, MPRT, eMPRT, sMPRT;
- :mod:`~attribkit.evaluation.axiomatic`: completeness, non-sensitivity, input invariance.

Shared pieces: :mod:`~attribkit.evaluation.base` (the input and result types),
:mod:`~attribkit.evaluation.scoring` (how a metric reads the target's score from the
model's raw output: class indices, or a target object of :mod:`attribkit.targets`),
:mod:`~attribkit.evaluation.rows` (preprocessing, baselines, batched rows of
perturbed images, ranks and correlations), :mod:`~attribkit.evaluation.functional`
(tensor-level deletion / insertion, ROAD imputation, SSIM). :func:`evaluate`
scores maps on any model; :mod:`~attribkit.evaluation.plugin` registers every
metric through the ``register_metrics`` hook, as a third-party plugin would.

Importing this package imports no torch; the names below load on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {"evaluate": "attribkit.evaluation.api", "MetricInput": "attribkit.evaluation.base",
         "MetricResult": "attribkit.evaluation.base"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'attribkit.evaluation' has no attribute {name!r}")
