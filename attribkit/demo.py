"""``attribkit demo``: every registered method on a generated image, written to disk."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np


def make_scene(size: int = 224, seed: int = 0) -> np.ndarray:
    """A generated ``(size, size, 3)`` picture in ``[0, 1]``: a shaded background,
    a red disc and a blue square at seeded positions."""
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


def run_demo(out: Path, size: int = 224) -> list[Path]:
    """Print the methods table, explain a generated image with every method, save PNGs."""
    import torch
    import torchvision
    from matplotlib.image import imsave

    from attribkit.api import explain, methods
    from attribkit.cli import format_table, method_rows
    from attribkit.images import to_input
    from attribkit.viz import save_heatmap

    print(format_table(method_rows(), ["name", "aliases", "family", "needs", "output", "plugin"]))
    out.mkdir(parents=True, exist_ok=True)
    image = make_scene(size)
    imsave(out / "scene.png", image)
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()  # random weights: no downloads here
    x = to_input(image, size)
    written = [out / "scene.png"]
    print(f"\nexplaining {out / 'scene.png'} with torchvision resnet18 (random weights)")
    for spec in methods():
        if spec.family == "perturbation":
            continue  # one forward per feature: run them with `attribkit explain --method`
        start = time.perf_counter()
        try:
            result = explain(model, x, method=spec.name)
        except Exception as exc:  # noqa: BLE001 - a method that cannot run on this model
            print(f"  {spec.name:28s} skipped: {type(exc).__name__}: {str(exc).splitlines()[0]}")
            continue
        ms = (time.perf_counter() - start) * 1e3
        path = save_heatmap(out / f"scene_{spec.name}.png", result.numpy()[0], image)
        written.append(path)
        layer = f" layer={result.layer}" if result.layer else ""
        print(f"  {spec.name:28s} {str(tuple(result.values.shape)):18s} target="
              f"{int(result.target[0]) if result.target is not None else '-'}{layer}  "
              f"{ms:7.1f} ms -> {path}")
    return written
