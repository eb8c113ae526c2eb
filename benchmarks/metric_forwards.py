"""Model forwards per image of every registered metric at two image sizes, with its defaults.

A counting wrapper around a tiny CNN counts the rows (images) each metric's
``ak.evaluate`` call pushes through the model, re-explanations included
(``method="saliency"``: one forward and one backward per explained image), minus
the forward ``ak.evaluate`` itself may run to check the targets. Printed
per image (2 images a call)::

    .venv/bin/python -m benchmarks.metric_forwards --sizes 32 224
    .venv/bin/python -m benchmarks.metric_forwards --sizes 32 224 --metrics selectivity irof

It runs against whichever attribkit is importable (``PYTHONPATH`` picks a checkout).
"""

from __future__ import annotations

import argparse
import time

import torch

B = 2


class Counting(torch.nn.Module):
    """The wrapped model, counting the rows of every forward in ``self.rows`` (a list)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.rows = [0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows[0] += len(x)
        return self.inner(x)


def count(name: str, side: int) -> tuple[float, float]:
    """``(forwards per image, seconds)`` of metric ``name`` on ``B`` images of ``side`` px."""
    import attribkit as ak
    from attribkit.testing import TinyCNN

    torch.manual_seed(0)
    model = Counting(TinyCNN().eval()).eval()
    # smooth images (SLIC finds superpixels in them, not in pixel noise)
    x = torch.nn.functional.interpolate(torch.rand(B, 3, 8, 8), size=(side, side), mode="bilinear")
    rel = torch.rand(B, side, side)
    masks = torch.zeros(B, side, side, dtype=torch.bool)
    masks[:, : side // 2, : side // 2] = True
    targets = torch.tensor([1, 2])
    spec = ak.get_metric(name)
    reexplains = bool({"model", "method"} & set(spec.needs))
    # the checks' own forward (an ak.evaluate call with no metric), not the metric's
    ak.evaluate(model, x, rel, targets, metrics=[])
    overhead = model.rows[0]
    model.rows[0] = 0
    start = time.perf_counter()
    ak.evaluate(model, x, rel, targets, metrics=[name],
                masks=masks if "ground_truth" in spec.needs else None,
                method="saliency" if reexplains else None)
    seconds = time.perf_counter() - start
    return (model.rows[0] - overhead) / B, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[32, 224])
    parser.add_argument("--metrics", nargs="*", help="only these metrics")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import attribkit as ak

    names = args.metrics or [s.name for s in ak.metrics()]
    print(f"{'metric':34s} " + " ".join(f"{f'{s}px fwd/img':>14s} {'s':>6s}" for s in args.sizes))
    for name in names:
        cells = []
        for side in args.sizes:
            try:
                per_image, seconds = count(name, side)
                cells.append(f"{per_image:14.1f} {seconds:6.1f}")
            except Exception as exc:  # noqa: BLE001 - a failing metric is a row, not the end
                cells.append(f"{type(exc).__name__:>14s} {'-':>6s}")
        print(f"{name:34s} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
