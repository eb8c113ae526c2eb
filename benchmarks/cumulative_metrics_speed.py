"""The cumulative removal metrics against their forward floor and against Quantus 0.6.

Every metric here scores, per image, a curve of cumulatively perturbed copies. The
setting makes the forwards equal: 64 one-channel 32x32 images (``benchmarks.shared``'s
tiny CNN, random relevance), 64 steps per image (pixel flipping and monotonicity: 16
pixels per step; region perturbation and selectivity: 4x4 patches, 64 of them; IROF: a
4x4 grid of superpixels; deletion / insertion: 63 steps, 64 points) and
``batch_size=64`` rows per model call, so attribkit runs 64 forwards of 64 rows (one
image's curve each), and Quantus, which perturbs the whole batch step by step, also
64 forwards of 64 rows (plus its unperturbed forward, as attribkit's where the metric
needs ``f(x)``).

The *floor* of a metric is the same number of forwards of the same row count on
prebuilt tensors (no perturbation work): the cost any implementation must pay.
Rounds alternate floor, attribkit, Quantus (each timed once per round); the summary is
the median of the per-round ratios. Quantus's per-sample AUC calls ``np.trapz``, gone
in NumPy 2: it is set to ``np.trapezoid`` for the Quantus calls only. ::

    .venv/bin/python -m benchmarks.cumulative_metrics_speed --rounds 15 --threads 1
    .venv/bin/python -m benchmarks.cumulative_metrics_speed --metrics pixel_flipping --profile

``--profile`` prints cProfile's top functions of attribkit's call instead of timing.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import torch

import attribkit as ak
from benchmarks.shared import numpy_trapz, pixel_flipping_setup

N, SIZE, ROWS = 64, 32, 64

#: metric -> (attribkit options, rows per image incl. f(x), Quantus class and options or None)
METRICS = {
    "pixel_flipping": ({"features_in_step": 16}, 64,
                       ("PixelFlipping", {"features_in_step": 16, "return_auc_per_sample": True})),
    "monotonicity": ({"features_in_step": 16}, 64, ("Monotonicity", {"features_in_step": 16})),
    "region_perturbation": ({"patch_size": 4, "regions_evaluation": 64}, 65,
                            ("RegionPerturbation", {"patch_size": 4, "regions_evaluation": 64})),
    "selectivity": ({"patch_size": 4}, 64, ("Selectivity", {"patch_size": 4})),
    "irof": ({"segmentation_method": "grid", "patch_size": 4, "perturb_baseline": "black"}, 65, None),
    "deletion_auc": ({"steps": 63}, 64, None),
    "insertion_auc": ({"steps": 63}, 64, None),
}


def floor(model: torch.nn.Module, x: torch.Tensor, per_image: int) -> None:
    """``N * per_image`` rows of prebuilt images, ``ROWS`` per forward."""
    total = len(x) * per_image
    batches = [x[torch.arange(s, min(s + ROWS, total), device=x.device) % len(x)]
               for s in range(0, total, ROWS)]
    with torch.no_grad():
        for batch in batches:
            model(batch)


def ours(model, x, y, a, name: str, options: dict) -> torch.Tensor:
    return ak.evaluate(model, x, a, y, metrics=[name], options={name: options},
                       batch_size=ROWS)[name].scores


def theirs(model, x, y, a, cls: str, options: dict):
    import quantus

    metric = getattr(quantus, cls)(**options, disable_warnings=True)
    with warnings.catch_warnings(), numpy_trapz():
        warnings.simplefilter("ignore")
        return metric(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                      a_batch=a[:, None].cpu().numpy(), channel_first=True, device=str(x.device),
                      softmax=True, batch_size=len(x))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="cnn", choices=["cnn", "linear"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, x, y, a = pixel_flipping_setup(args.model, N, SIZE, torch.device(args.device))
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    print(f"{N} one-channel {SIZE}x{SIZE} images, {args.model}, {ROWS} rows per call, {args.device}, "
          f"{args.threads} thread(s), {args.rounds} alternating rounds; median of per-round ratios")
    for name in args.metrics.split(","):
        options, per_image, peer = METRICS[name]
        if args.profile:
            import cProfile
            import pstats

            ours(model, x, y, a, name, options)
            prof = cProfile.Profile()
            prof.enable()
            for _ in range(5):
                ours(model, x, y, a, name, options)
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
            continue
        impls = {"floor": lambda: floor(model, x, per_image),
                 "attribkit": lambda: ours(model, x, y, a, name, options)}
        if peer is not None:
            impls["quantus"] = lambda: theirs(model, x, y, a, *peer)
        for fn in impls.values():  # warm-up
            fn()
            sync()
        times: dict[str, list[float]] = {k: [] for k in impls}
        for _ in range(args.rounds):
            for key, fn in impls.items():
                times[key].append(timed(lambda: (fn(), sync())))
        ratio = [t / f for t, f in zip(times["attribkit"], times["floor"])]
        line = (f"{name:22s} floor {statistics.median(times['floor']) * 1e3:7.1f} ms  "
                f"attribkit {statistics.median(times['attribkit']) * 1e3:7.1f} ms = "
                f"{statistics.median(ratio):.2f} x floor")
        if "quantus" in times:
            q_ratio = [t / q for t, q in zip(times["attribkit"], times["quantus"])]
            line += (f"  quantus {statistics.median(times['quantus']) * 1e3:7.1f} ms "
                     f"({statistics.median([q / f for q, f in zip(times['quantus'], times['floor'])]):.2f} x floor); "
                     f"attribkit / quantus {statistics.median(q_ratio):.2f}")
        print(line, flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
