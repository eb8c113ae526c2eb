"""``attribkit bench feedback``: does attribution-guided training fix a shortcut?

The synthetic data (:mod:`attribkit.bench.synthetic`) decides the class by a
small pattern's shape; with ``spurious=True`` the background colour also
predicts the class (with probability ``spurious_p``) in the *training* split
only. A model that learned the background fails on the test split made with
``spurious=False`` (the cue broken).

The same small CNN (:class:`~attribkit.bench.reference.ReferenceCNN`, trained by
:func:`~attribkit.bench.training.train`) is trained per seed with:

``plain``
    cross-entropy only;
``rrr``
    + :class:`~attribkit.training.RRRLoss` with the complement of the evidence
    mask as the irrelevant region (Ross et al. 2017);
``cam-mask``
    + :class:`~attribkit.training.CAMLoss` with the evidence mask as the allowed region;
``plain-centred`` / ``cam-centre``
    the same on the ``centred=True`` variant of the data (the pattern near the
    centre), plain and + ``CAMLoss`` with the centre-distance kernel (no
    annotation needed: the "interpretability as a feedback loop" seed idea).

Reported per variant, mean ± sample std over seeds: accuracy on the cue-broken
test split, accuracy on a cue-present (in-distribution) test split, and the
relevance mass accuracy (Arras et al. 2022) of Grad-CAM (``ak.explain(...,
method="gradcam", target=true label)``, automatic layer) on the cue-broken
split against the evidence masks. Writes ``results.json``, ``table.md`` and
``gradcam_plain_vs_guided.png`` (+ ``gradcam_centred_plain_vs_centre.png``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from attribkit.bench.reference import ReferenceCNN
from attribkit.bench.training import accuracy, train
from attribkit.bench.synthetic import make_dataset

# Chosen by the sweep recorded in docs/training.md (quick-profile data, seed 0).
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"size": 48, "width": 16, "classes": 6, "n_train": 2000, "n_test": 500, "epochs": 6,
              "batch": 64, "lr": 3e-3, "seeds": 5},
    "full": {"size": 64, "width": 32, "classes": 6, "n_train": 6000, "n_test": 1000, "epochs": 10,
             "batch": 64, "lr": 3e-3, "seeds": 5},
    # for tests: seconds, meaningless numbers
    "tiny": {"size": 32, "width": 8, "classes": 4, "n_train": 48, "n_test": 16, "epochs": 1,
             "batch": 16, "lr": 3e-3, "seeds": 1},
}
VARIANTS = ("plain", "rrr", "cam-mask", "plain-centred", "cam-centre")
WEIGHTS = {"rrr": 1000.0, "cam-mask": 3.0, "cam-centre": 3.0}
CAM_LAYER = "features"  # the last spatial layer: the one Grad-CAM is evaluated on
TEST_SEED = 10_000
INDIST_SEED = 20_000
FIGURE_IMAGES = 6


@dataclasses.dataclass
class FeedbackConfig:
    """One run of the experiment; ``None`` fields take the profile's value."""

    out: Path
    profile: str = "quick"
    seeds: int | None = None
    seed: int = 0  # the first seed; seeds are seed, seed+1, ...
    variants: Sequence[str] = VARIANTS
    weights: dict[str, float] = dataclasses.field(default_factory=lambda: dict(WEIGHTS))
    spurious_p: float = 0.9
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # profile keys

    def settings(self) -> dict[str, Any]:
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {self.profile!r}")
        unknown = set(self.variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
        s = {**PROFILES[self.profile], **self.overrides}
        if self.seeds is not None:
            s["seeds"] = int(self.seeds)
        return s


@dataclasses.dataclass
class Split:
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


def _split(n: int, s: dict, *, seed: int, spurious: bool, centred: bool, p: float) -> Split:
    d = make_dataset(n, size=s["size"], classes=s["classes"], seed=seed, spurious=spurious,
                     spurious_p=p, centred=centred)
    return Split(torch.from_numpy(d.images), torch.from_numpy(d.labels), torch.from_numpy(d.masks))


def _guidance(variant: str, model: torch.nn.Module, masks: torch.Tensor,
              weight: float) -> tuple[contextlib.AbstractContextManager, Callable | None]:
    """``(watch block, extra_loss)`` for :func:`~attribkit.bench.training.train`: the loss
    watches train's own forward, so the guided step runs one forward, as the plain one."""
    from attribkit.training import CAMLoss, RRRLoss

    if variant == "rrr":
        rrr = RRRLoss(model, weight=weight)
        return rrr.watch(), lambda m, x, y, idx: rrr.penalty(~masks[idx])
    if variant == "cam-mask":
        cam = CAMLoss(model, CAM_LAYER, kernel=None, weight=weight)
        return cam.watch(), lambda m, x, y, idx: cam.penalty(y, allowed=masks[idx])
    if variant == "cam-centre":
        cam = CAMLoss(model, CAM_LAYER, kernel="centre", weight=weight)
        return cam.watch(), lambda m, x, y, idx: cam.penalty(y)
    return contextlib.nullcontext(), None


def gradcam_mass(model: torch.nn.Module, split: Split, batch: int = 250) -> float:
    """Mean relevance mass accuracy of Grad-CAM (true class, automatic layer)."""
    from attribkit.api import explain
    from attribkit.evaluation.functional import pixel_relevance, relevance_mass_accuracy

    scores = []
    size = tuple(split.images.shape[-2:])
    for i in range(0, len(split.labels), batch):
        x, y, m = split.images[i:i + batch], split.labels[i:i + batch], split.masks[i:i + batch]
        values = explain(model, x, target=y, method="gradcam").values
        rel = pixel_relevance(torch.as_tensor(values), size)
        scores.append(relevance_mass_accuracy(rel, m))
    return float(torch.cat(scores).mean())


def _mean_std(xs: list[float]) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std


DESCRIPTIONS = {
    "plain": ("standard", "none"),
    "rrr": ("standard", "RRR, irrelevant = outside the evidence mask"),
    "cam-mask": ("standard", "Grad-CAM loss, allowed = evidence mask"),
    "plain-centred": ("centred", "none"),
    "cam-centre": ("centred", "Grad-CAM loss, centre-distance kernel"),
}
METRICS = (("acc_broken", "accuracy, cue broken"), ("acc_cue", "accuracy, cue present"),
           ("gradcam_mass", "Grad-CAM relevance mass (cue broken)"), ("train_s", "train s"))


def format_table(summary: dict[str, dict[str, Any]], weights: dict[str, float]) -> str:
    """The markdown table of :func:`run_feedback`'s summary."""
    head = ["variant", "data", "guidance", "weight", *[label for _, label in METRICS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["--:"] * len(METRICS)) + "|"]
    for variant, row in summary.items():
        data, guidance = DESCRIPTIONS[variant]
        cells = [f"`{variant}`", data, guidance, f"{weights[variant]:g}" if variant in weights else "-"]
        for key, _ in METRICS:
            mean, std = row[key]["mean"], row[key]["std"]
            cells.append(f"{mean:.1f} ± {std:.1f}" if key == "train_s" else f"{mean:.3f} ± {std:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _figure(models: dict[str, torch.nn.Module], split: Split, path: Path, title: str) -> Path:
    from attribkit.viz.figures import save
    from attribkit.viz.grids import compare_models

    k = min(FIGURE_IMAGES, len(split.labels))
    fig = compare_models(models, split.images[:k], method="gradcam", target=split.labels[:k],
                         show_image=True, title=title)
    out = save(fig, path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return out


def run_feedback(config: FeedbackConfig, *, log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Run the experiment; write ``results.json``, ``table.md`` and the figures to
    ``config.out``; return the results dict."""
    s = config.settings()
    say = log or (lambda _msg: None)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    p = config.spurious_p
    tests = {}
    for layout in {DESCRIPTIONS[v][0] for v in config.variants}:
        centred = layout == "centred"
        tests[layout] = (_split(s["n_test"], s, seed=TEST_SEED, spurious=False, centred=centred, p=p),
                         _split(s["n_test"], s, seed=INDIST_SEED, spurious=True, centred=centred, p=p))
    runs: list[dict[str, Any]] = []
    first_models: dict[str, torch.nn.Module] = {}
    start_all = time.perf_counter()
    for seed in range(config.seed, config.seed + s["seeds"]):
        trains = {layout: _split(s["n_train"], s, seed=seed, spurious=True, centred=layout == "centred", p=p)
                  for layout in tests}
        for variant in config.variants:
            layout = DESCRIPTIONS[variant][0]
            data = trains[layout]
            torch.manual_seed(seed)
            model = ReferenceCNN(s["classes"], s["width"])
            watch, extra = _guidance(variant, model, data.masks, config.weights.get(variant, 0.0))
            t0 = time.perf_counter()
            with watch:
                train(model, data.images, data.labels, epochs=s["epochs"], batch=s["batch"], lr=s["lr"],
                      seed=seed, extra_loss=extra)
            train_s = time.perf_counter() - t0
            broken, cue = tests[layout]
            record = {"variant": variant, "seed": seed, "train_s": train_s,
                      "acc_broken": accuracy(model, broken.images, broken.labels),
                      "acc_cue": accuracy(model, cue.images, cue.labels),
                      "gradcam_mass": gradcam_mass(model, broken)}
            runs.append(record)
            if seed == config.seed:
                first_models[variant] = model
            say(f"seed {seed} {variant:14s} acc broken {record['acc_broken']:.3f}  cue {record['acc_cue']:.3f}  "
                f"Grad-CAM mass {record['gradcam_mass']:.3f}  ({train_s:.1f}s)")
    summary: dict[str, dict[str, Any]] = {}
    for variant in config.variants:
        rows = [r for r in runs if r["variant"] == variant]
        summary[variant] = {key: dict(zip(("mean", "std"), _mean_std([r[key] for r in rows])))
                            for key, _ in METRICS}
    table = format_table(summary, config.weights)
    figures = []
    plain = {k: first_models[k] for k in ("plain", "rrr", "cam-mask") if k in first_models}
    if len(plain) > 1:
        figures.append(_figure(plain, tests["standard"][0], out / "gradcam_plain_vs_guided.png",
                               f"Grad-CAM (true class), cue-broken test images, seed {config.seed}"))
    centred = {k: first_models[k] for k in ("plain-centred", "cam-centre") if k in first_models}
    if len(centred) > 1:
        figures.append(_figure(centred, tests["centred"][0], out / "gradcam_centred_plain_vs_centre.png",
                               f"Grad-CAM (true class), centred cue-broken test images, seed {config.seed}"))
    total_s = time.perf_counter() - start_all
    results = {
        "experiment": "feedback", "profile": config.profile, "settings": s,
        "seeds": list(range(config.seed, config.seed + s["seeds"])), "weights": config.weights,
        "cam_layer": CAM_LAYER, "spurious_p": p, "variants": list(config.variants),
        "summary": summary, "runs": runs, "table": table, "figures": [str(f) for f in figures],
        "seconds": total_s, "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": platform.python_version(),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    n_seeds = s["seeds"]
    (out / "table.md").write_text(
        f"# Attribution-guided training on the spurious-background data ({config.profile} profile)\n\n"
        f"{table}\n\nmean ± sample std over {n_seeds} seed{'s' if n_seeds > 1 else ''} "
        f"({s['n_train']} training images of {s['size']}x{s['size']} px, {s['classes']} classes, background cue "
        f"p={p}, {s['epochs']} epochs; {s['n_test']} test images per split); {total_s:.0f} s in all.\n")
    say(f"{len(runs)} runs in {total_s:.0f} s; table.md, results.json and figures in {out}")
    return results
