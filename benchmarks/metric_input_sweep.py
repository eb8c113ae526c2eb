"""Every registered metric over careless inputs: what does ``ak.evaluate`` do with each?

Each (metric, case) call ends in one of:

- ``named``: an ``AttribkitError`` (the one-line error a user can act on);
- ``warned``: a result and a ``MetricWarning`` (NaN where the score is undefined);
- ``defined``: a finite result without a warning, for a degenerate input the metric
  defines a value for (a constant map's sparseness, ...): fine for those cases only;
- ``silent``: a result without a warning for a bad input (wrong shape, target out of
  range, a mask no metric reads), or NaN / infinity without a warning;
- ``raw``: any other exception (a torch ``RuntimeError``, a plain ``ValueError``, ...).

The cases: a map of the wrong height/width, 3 maps for 2 images, a map with NaN,
targets out of range, negative, too many, masks of the wrong shape, a mask given to
a metric that reads none (``invalid``: each must be ``named`` or ``warned``); a zero
map, a constant map, an all-False mask, a batch of one image, a 4x4 image, a 1x1
image (``degenerate``: ``named``, ``warned`` or ``defined``). A tiny CNN on 16x16 images, small sample
counts, so the whole sweep takes about a minute on a CPU::

    .venv/bin/python -m benchmarks.metric_input_sweep            # the counts table
    .venv/bin/python -m benchmarks.metric_input_sweep --verbose  # plus every bad call

It runs against whichever attribkit is importable (``PYTHONPATH`` picks a checkout).
"""

from __future__ import annotations

import argparse
import collections
import warnings
from collections.abc import Iterator
from typing import Any

import torch

B, H, CLASSES = 2, 16, 5

#: sample counts cut to keep the sweep fast (defaults that scale with the image are kept)
FAST: dict[str, dict[str, Any]] = {
    **{name: {"nr_samples": 2} for name in (
        "local_lipschitz_estimate", "max_sensitivity", "avg_sensitivity", "relative_input_stability",
        "relative_output_stability", "relative_representation_stability", "smprt")},
    "faithfulness_correlation": {"nr_runs": 6},
    "sensitivity_n": {"nr_samples": 3, "n_values": 3},
    "monotonicity_correlation": {"nr_samples": 1},
    "continuity": {"nr_steps": 4},
    "road": {"iterations": 5},
    "infidelity": {"n_perturb_samples": 1},
    "captum.infidelity": {"n_perturb_samples": 2},
    "captum.sensitivity_max": {"n_perturb_samples": 2},
}

INVALID = ("map_hw", "map_batch", "map_nan", "target_range", "target_negative", "target_length",
           "mask_shape", "mask_unused")
DEGENERATE = ("zero_map", "constant_map", "empty_mask", "batch_of_one", "image_4px", "image_1px")


def _model() -> torch.nn.Module:
    from attribkit.testing import TinyCNN

    torch.manual_seed(0)
    return TinyCNN(classes=CLASSES).eval()


def cases(takes_mask: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(case, evaluate kwargs)`` for one metric (mask cases only where they apply)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(B, 3, H, H, generator=gen)
    rel = torch.rand(B, 1, H, H, generator=gen)
    mask = torch.zeros(B, H, H, dtype=torch.bool)
    mask[:, 4:10, 4:10] = True
    good = {"inputs": x, "relevance": rel, "targets": torch.tensor([1, 2]),
            "masks": mask if takes_mask else None}
    yield "map_hw", {**good, "relevance": torch.rand(B, 1, 19, 14, generator=gen)}
    yield "map_batch", {**good, "relevance": torch.rand(B + 1, 1, H, H, generator=gen)}
    nan = rel.clone()
    nan[1, 0, 3, 3] = float("nan")
    yield "map_nan", {**good, "relevance": nan}
    yield "target_range", {**good, "targets": torch.tensor([1, 7])}
    yield "target_negative", {**good, "targets": torch.tensor([-1, 1])}
    yield "target_length", {**good, "targets": torch.tensor([1, 2, 3])}
    if takes_mask:
        yield "mask_shape", {**good, "masks": torch.ones(B, 12, 12, dtype=torch.bool)}
    else:
        yield "mask_unused", {**good, "masks": mask}
    yield "zero_map", {**good, "relevance": torch.zeros_like(rel)}
    yield "constant_map", {**good, "relevance": torch.full_like(rel, 0.3)}
    if takes_mask:
        yield "empty_mask", {**good, "masks": torch.zeros_like(mask)}
    yield "batch_of_one", {key: (value[:1] if value is not None else None) for key, value in good.items()}
    for side in (4, 1):
        small = {"inputs": torch.rand(B, 3, side, side, generator=gen),
                 "relevance": torch.rand(B, 1, side, side, generator=gen), "targets": torch.tensor([1, 2]),
                 "masks": torch.ones(B, side, side, dtype=torch.bool) if takes_mask else None}
        if takes_mask and side > 1:
            small["masks"][:, :side // 2] = False
        yield f"image_{side}px", small


def run_case(model: torch.nn.Module, spec: Any, kwargs: dict[str, Any]) -> tuple[str, str]:
    """``(outcome, detail)`` of one ``ak.evaluate`` call."""
    import attribkit as ak
    from attribkit.errors import AttribkitError

    reexplains = bool({"model", "method"} & set(spec.needs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = ak.evaluate(model, kwargs["inputs"], kwargs["relevance"], kwargs["targets"],
                              metrics=[spec.name], masks=kwargs["masks"],
                              options={spec.name: FAST.get(spec.name, {})},
                              method="saliency" if reexplains else None)
        except AttribkitError as exc:
            return "named", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 - the point is to count them
            return "raw", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    flagged = [w for w in caught if type(w.message).__name__ == "MetricWarning"]
    scores = out[spec.name].scores
    text = f"scores {[round(float(v), 4) for v in scores.flatten()]}"
    if flagged:
        return "warned", f"{text}; {flagged[0].message}"
    if bool(torch.isfinite(scores).all()):
        return "finite", text
    return "silent", text


def sweep(names: list[str] | None = None) -> list[tuple[str, str, str, str]]:
    """``(metric, case, outcome, detail)`` for every registered metric (or ``names``) and case;
    ``finite`` is counted as ``silent`` for an invalid case and as ``defined`` otherwise."""
    import attribkit as ak

    model = _model()
    rows = []
    for spec in ak.metrics():
        if names and spec.name not in names:
            continue
        for case, kwargs in cases("ground_truth" in spec.needs):
            outcome, detail = run_case(model, spec, kwargs)
            if outcome == "finite":
                outcome = "silent" if case in INVALID else "defined"
            rows.append((spec.name, case, outcome, detail))
    return rows


OUTCOMES = ("named", "warned", "defined", "silent", "raw")


def table(rows: list[tuple[str, str, str, str]]) -> str:
    """Counts per case and in total: tried / named / warned / defined / silent / raw."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for _, case, outcome, _ in rows:
        counts[case][outcome] += 1
        counts["total"][outcome] += 1
    lines = [f"{'case':16s} {'tried':>5s} " + " ".join(f"{o:>7s}" for o in OUTCOMES)]
    for case in [*INVALID, *DEGENERATE, "total"]:
        if case in counts:
            c = counts[case]
            lines.append(f"{case:16s} {sum(c.values()):5d} " + " ".join(f"{c[o]:7d}" for o in OUTCOMES))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="*", help="only these metrics")
    parser.add_argument("--verbose", action="store_true", help="list every silent or raw call")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = sweep(args.metrics)
    if args.verbose:
        for metric, case, outcome, detail in rows:
            if outcome in ("silent", "raw") or args.metrics:
                print(f"{outcome:7s} {metric:34s} {case:16s} {detail[:160]}")
    print(table(rows))


if __name__ == "__main__":
    main()
