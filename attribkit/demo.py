"""``attribkit demo``: a tour of attribkit on the reference model of the shapes task.

1. the methods table;
2. the reference model (a small CNN trained on the synthetic ground-truth
   images, cached after the first run) explained by every method on a few
   test images: one PNG per method (every image beside its map, enlarged to
   at least 192 px and titled) and a comparison grid of one method per main
   family (:data:`COMPARED`; ``compare_methods`` picks others, ``["all"]`` every
   built-in method);
3. a short benchmark of attribkit's own methods: localisation against the
   known evidence, deletion, and speed relative to the floor (without the peer
   libraries: ``attribkit bench`` times those), with its self-contained HTML
   report (``bench/report.html``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from attribkit.images import as_batch
from attribkit.registry import MAIN_METHODS

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attribkit.result import Attribution

MIN_SIDE = 192  # pixels per image in the per-method PNGs
#: the comparison grid's methods: the gradient family (plain, smoothed, guided), LRP, CAM
#: with gradients and without (Score-CAM), and Guided Grad-CAM; the image makes the 8th column
COMPARED = MAIN_METHODS


def make_scene(size: int = 224, seed: int = 0) -> np.ndarray:
    """A generated ``(size, size, 3)`` picture in ``[0, 1]``: a shaded background,
    a red disc and a blue square at seeded positions (for ``attribkit explain`` examples)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.4 + 0.3 * yy, 0.5 + 0.2 * xx, 0.45 + 0.1 * (xx - yy)], axis=-1)
    cy, cx = rng.uniform(0.25, 0.75, size=2)
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 0.12**2
    img[disc] = (0.9, 0.15, 0.1)
    sy, sx = rng.uniform(0.1, 0.7, size=2)
    square = (yy > sy) & (yy < sy + 0.2) & (xx > sx) & (xx < sx + 0.2) & ~disc
    img[square] = (0.1, 0.2, 0.85)
    return img.astype(np.float32)


def method_figure(result: Attribution, images: np.ndarray, class_names: Sequence[str],
                  min_side: int = MIN_SIDE) -> Figure:
    """One method's maps of every image (``(B, H, W, 3)``), each beside its image, enlarged by
    nearest neighbour to at least ``min_side`` pixels; :func:`~attribkit.viz.show` titles it with
    the method and layer and labels each row with the explained class's name."""
    from attribkit.viz import show

    scale = -(-min_side // images.shape[1])  # ceil
    values = as_batch(result.upsampled(images.shape[1:3]), batched=True)
    big = dataclasses.replace(result, values=values.repeat(scale, -2).repeat(scale, -1))
    return show(big, images.repeat(scale, 1).repeat(scale, 2), mode=["original_image", "blended_heat_map"],
                class_names=class_names, colorbar="column")


def compared_methods(requested: Sequence[str] | None, every: Sequence[str]) -> list[str]:
    """The comparison grid's methods: :data:`COMPARED` for ``None``, ``every`` for
    ``["all"]``, else ``requested`` (each must be a registered method or alias:
    ``UnknownMethodError`` with a suggestion otherwise, before any work)."""
    from attribkit.api import get_method

    if requested is None:
        return list(COMPARED)
    if list(requested) == ["all"]:
        return list(every)
    for name in requested:
        get_method(name)
    return list(requested)


def run_demo(out: Path, n_images: int = 4, bench_images: int | None = None,
             compare_methods: Sequence[str] | None = None) -> list[Path]:
    """Print the methods table, explain test images of the reference model with every
    method (perturbation methods excepted: see ``attribkit explain``), save PNGs, and
    print a short benchmark (the bench's ``demo`` profile: ``bench_images`` images, default
    16). ``compare_methods``: the comparison grid's methods (default :data:`COMPARED`;
    ``["all"]``: every built-in method but ``random``)."""
    from attribkit.api import explain, methods
    from attribkit.bench.runner import BenchConfig, run_bench
    from attribkit.bench.tasks import DEFAULT_TASK, get_task
    from attribkit.progress import quiet
    from attribkit.tables import format_table, method_rows
    from attribkit.viz import compare, save

    builtin = [s.name for s in methods() if (s.plugin or "").startswith("attribkit.")
               and s.family not in ("perturbation", "attention")]
    every = [m for m in builtin if m != "random"]
    shown_methods = compared_methods(compare_methods, every)
    print(format_table(method_rows(), ["name", "aliases", "family", "needs", "output", "plugin"]))
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(DEFAULT_TASK)
    print(f"\nreference model of the {task.name} task (trained on first use, then cached):")
    model = task.model(log=lambda s: print("  " + s))
    data = task.data(n_images)
    x = data.inputs
    shown = x.numpy().transpose(0, 2, 3, 1)
    written = []
    print(f"\nexplaining {n_images} test images (classes: "
          f"{', '.join(data.class_names[int(c)] for c in data.labels)}):")
    with quiet():  # a line per method says what ran and how long: no progress bars between them
        for spec in methods():
            if spec.family in ("perturbation", "attention"):  # attention: transformers only
                continue
            start = time.perf_counter()
            try:
                result = explain(model, x, method=spec.name)
            except Exception as exc:  # noqa: BLE001 - a method that cannot run on this model
                print(f"  {spec.name:34s} skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            ms = (time.perf_counter() - start) * 1e3
            written.append(save(method_figure(result, shown, data.class_names), out / f"{spec.name}.png"))
            layer = f" layer={result.layer}" if result.layer else ""
            print(f"  {spec.name:34s} {str(tuple(result.values.shape)):18s}{layer:16s} {ms:8.1f} ms")
        grid = compare(model, x, methods=shown_methods, class_names=list(data.class_names),
                       row_labels=[f"image {i}\ntrue: {data.class_names[int(c)]}"
                                   for i, c in enumerate(data.labels)])
    written.append(save(grid, out / "compare.png"))
    print(f"\ncomparison grid of {len(shown_methods)} methods ({', '.join(shown_methods)}): {out / 'compare.png'}"
          + ("" if shown_methods == every else f"\n  (`attribkit demo --compare all` shows all {len(every)})"))
    config = BenchConfig(out=out / "bench", profile="demo", methods=builtin, n_images=bench_images, peers=False)
    print(f"\nshort benchmark ({config.settings()['n_images']} images, without the peer libraries; "
          "`attribkit bench` runs the full table with them):")
    run_bench(config, progress=False, log=lambda s: None)
    report = (out / "bench" / "report.md").read_text()
    print("\n".join(line for line in report.splitlines() if line.startswith("|")))
    from attribkit.report.bench import bench_report

    html = bench_report(out / "bench")
    print(f"\nthe benchmark's HTML report (one file, opens offline): {html}")
    return [*written, html]
