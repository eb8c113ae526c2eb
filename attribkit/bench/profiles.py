"""What ``--profile quick`` and ``--profile full`` mean: one meaning on every task.

``quick`` scores :data:`QUICK_METRICS` (localisation, deletion / insertion, ROAD
and the two sanity checks) with attribkit's own methods, within about five
minutes a task on two CPU cores once the task's model is cached; ``full``
scores every registered metric (the Quantus-named suite included) with every
registered method but the perturbation family, on more images with more
timing repeats. ``--methods`` and ``--metrics`` override either list. ``demo``
(``attribkit demo``'s short benchmark, not offered by ``attribkit bench``) scores
three cheap metrics on 16 images and times batches of 8.
"""

from __future__ import annotations

from typing import Any

#: the metrics of the quick profile (``--profile full`` or ``--metrics`` run the others)
QUICK_METRICS = ("deletion_auc", "insertion_auc", "road_morf", "road_lerf", "pointing_game",
                 "relevance_mass_accuracy", "relevance_rank_accuracy", "cascading_randomization",
                 "random_logit")

#: the re-explaining metrics of the Quantus-named suite draw fewer samples in the bench
#: (Quantus's 200 noise draws per image are 200 explanations each)
SUITE_OPTIONS: dict[str, dict[str, Any]] = {
    name: {"nr_samples": 10} for name in ("local_lipschitz_estimate", "max_sensitivity", "avg_sensitivity",
                                          "relative_input_stability", "relative_output_stability")
}

#: per profile: ``metrics`` (a list, or None for every registered one), ``builtin_only``
#: (attribkit's own methods only), images scored, images for the re-explaining metrics
#: and for the ``few_images`` metrics (ROAD's imputation is the quick profile's costliest),
#: timing repeats and batch, the metrics' options, and how many of a method's variants
#: beside its default (None: all; see :data:`attribkit.bench.selection.VARIANTS`)
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"metrics": QUICK_METRICS, "builtin_only": True, "n_images": 32, "sanity_images": 16,
              "few_images": ("road_morf", "road_lerf"), "repeats": 3, "speed_batch": 16, "variants": 1,
              "metric_options": {**SUITE_OPTIONS, "deletion_auc": {"steps": 16}, "insertion_auc": {"steps": 16}}},
    # attribkit demo's short benchmark: three cheap metrics on 16 images, timed on batches of 8
    "demo": {"metrics": ("pointing_game", "relevance_mass_accuracy", "deletion_auc"), "builtin_only": True,
             "n_images": 16, "sanity_images": 8, "few_images": (), "repeats": 3, "speed_batch": 8, "variants": 1,
             "metric_options": {"deletion_auc": {"steps": 16}}},
    "full": {"metrics": None, "builtin_only": False, "n_images": 500, "sanity_images": 64,
             "few_images": (), "repeats": 10, "speed_batch": 64, "variants": None, "metric_options": {**SUITE_OPTIONS}},
}


def profile(name: str) -> dict[str, Any]:
    """The settings of profile ``name`` (a copy); an unknown name raises ``ValueError``."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}, got {name!r}")
    return dict(PROFILES[name])
