"""Build the pictures of docs/visualisation.md from a model trained right here.

    python docs/make_gallery.py [OUT]        # default OUT: docs/gallery/ (git-ignored)
    python docs/make_gallery.py OUT --quick  # smaller data and training, for tests

No downloads: the script generates 40x40 pictures, each with one coloured
shape (a disc, a square, a triangle or a cross, at a random place and size)
and one grey shape of the same kinds as a distractor, on a grey, shaded, noisy
background. The class is the hue of the coloured shape (red, green, blue,
yellow), so nothing outside that shape carries any signal and a model that
has learnt the task must look at it. A small CNN learns it in under a minute on a
CPU; every built-in method that runs on it (``--all-plugins``: every
registered one) is then drawn, and the shape's mask gives the ground truth
for a small metrics table (pointing game, relevance mass, deletion and
insertion over the first quarter of the pixels, as the mean score along the curve).
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

import attribkit as ak
from attribkit.images import IMAGENET_MEAN as MEAN, IMAGENET_STD as STD  # the model sees normalised inputs
from attribkit.viz import MODES, SIGNS, curve_auc

CLASSES = ("red", "green", "blue", "yellow")
HUES = np.array([(0.9, 0.15, 0.1), (0.15, 0.75, 0.2), (0.15, 0.3, 0.95), (0.95, 0.85, 0.1)], np.float32)
SIZE = 40


def shape_mask(kind: int, cy: float, cx: float, r: float, size: int = SIZE) -> np.ndarray:
    """A boolean ``(size, size)`` disc (0), square (1), triangle (2) or cross (3)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if kind == 0:
        return dy**2 + dx**2 <= r**2
    if kind == 1:
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if kind == 2:
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    bar = r * 0.35
    return ((np.abs(dy) <= bar) & (np.abs(dx) <= r)) | ((np.abs(dx) <= bar) & (np.abs(dy) <= r))


def make_shapes(n: int, size: int = SIZE, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``n`` pictures ``(n, 3, size, size)`` in [0, 1], their labels, and the
    boolean masks ``(n, size, size)`` of the coloured shapes (the evidence).

    Each picture has one coloured shape (the class is its hue, with jitter;
    its form is random) and one grey shape as a distractor, on a greyish
    shaded, noisy background: only the coloured shape tells the class.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.empty((n, size, size), bool)
    labels = rng.integers(0, len(CLASSES), n)
    for i, label in enumerate(labels):
        grey = rng.uniform(0.25, 0.75)
        shade = rng.uniform(-0.2, 0.2) * ((yy + xx) / (2 * size) - 0.5)
        img = grey + rng.uniform(-0.05, 0.05, 3) + shade[..., None]
        img = img + rng.normal(0, 0.04, img.shape)
        r = rng.uniform(5.0, 8.0)
        cy, cx = rng.uniform(r + 1, size - r - 1, 2)
        mask = shape_mask(rng.integers(4), cy, cx, r, size)
        for _ in range(20):  # a grey distractor that does not overlap the shape
            rd = rng.uniform(4.0, 7.0)
            other = shape_mask(rng.integers(4), *rng.uniform(rd + 1, size - rd - 1, 2), rd, size)
            if not (other & mask).any():
                img[other] = np.clip(grey + rng.choice([-0.35, 0.35]), 0, 1)
                break
        img[mask] = np.clip(HUES[label] + rng.normal(0, 0.06, 3), 0, 1)
        images[i] = np.clip(img, 0, 1)
        masks[i] = mask
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels), masks


class ShapeNet(nn.Module):
    """conv-relu x2, max-pool, conv-relu x2, global average pool, linear: 20x20 CAMs."""

    def __init__(self, classes: int = len(CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x)).split(64):
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


VIT_METHODS = ("raw_attention", "attention_rollout", "generic_attention", "gradcam", "saliency")


def small_vit(classes: int = len(CLASSES), size: int = SIZE) -> nn.Module | None:
    """A small timm ViT for the pictures (4x4 patches: a 10x10 token grid, a class
    token, two blocks of width 32), randomly initialised; ``None`` without timm."""
    try:
        from timm.models.vision_transformer import VisionTransformer
    except ImportError:
        return None
    return VisionTransformer(img_size=size, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0,
                             num_classes=classes)


def runnable_methods(model: nn.Module, x: torch.Tensor, names: list[str] | None = None,
                     all_plugins: bool = False) -> list[str]:
    """The methods (``names``, default: every built-in one and the example
    plugin's, or every registered one with ``all_plugins``) that explain
    ``model`` on ``x`` without an error."""
    if names is None:
        names = [s.name for s in ak.methods()
                 if all_plugins or s.plugin in ("example", None) or s.plugin.startswith("attribkit.")]
    runnable = []
    for name in names:
        try:
            ak.explain(model, x[:1], method=name)
        except Exception as exc:  # a method this model cannot serve: leave it out
            warnings.warn(f"gallery: {name} does not run here: {exc}", stacklevel=1)
        else:
            runnable.append(name)
    return runnable


def pixel_maps(result: ak.Attribution) -> np.ndarray:
    """``(B, H, W)``: channels summed, absolute value, at input resolution."""
    return np.abs(result.upsampled().detach().cpu().numpy().sum(axis=1))


FRACTIONS = np.linspace(0.0, 0.25, 21)  # a shape covers at most ~15 % of a picture


def perturbation_curves(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, maps: np.ndarray,
                        fractions: np.ndarray = FRACTIONS) -> dict[str, np.ndarray]:
    """Deletion (most relevant pixels first set to the mean) and insertion
    (most relevant pixels first put back into a mean image) curves: the
    softmax probability of ``targets`` at each fraction, ``(B, len(fractions))`` each."""
    b, _, h, w = x.shape
    rank = np.argsort(np.argsort(-maps.reshape(b, -1), axis=1), axis=1).reshape(b, 1, h, w)
    keep = torch.from_numpy(np.stack([rank >= f * h * w for f in fractions]))  # (S, B, 1, H, W)
    curves = {}
    with torch.no_grad():
        for kind, shown in (("deletion", keep), ("insertion", ~keep)):
            batch = (x.unsqueeze(0) * shown).reshape(-1, *x.shape[1:])  # the mean is 0 after normalising
            probs = model(batch).softmax(1).reshape(len(fractions), b, -1)
            curves[kind] = probs[:, torch.arange(b), targets].T.numpy()
    return curves


def localisation(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """Pointing game (the map's maximum lies on the shape) and relevance mass
    (the share of the map's total inside the shape), averaged over images."""
    peaks = maps.reshape(len(maps), -1).argmax(1)
    hits = masks.reshape(len(masks), -1)[np.arange(len(maps)), peaks]
    mass = (maps * masks).sum((1, 2)) / np.maximum(maps.sum((1, 2)), 1e-12)
    return {"pointing game": float(hits.mean()), "relevance mass": float(mass.mean())}


def time_method(fn, repeats: int = 3) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(Path(__file__).parent / "gallery"))
    parser.add_argument("--quick", action="store_true", help="small data and training (for tests)")
    parser.add_argument("--methods", help="comma-separated methods (default: the built-in ones)")
    parser.add_argument("--all-plugins", action="store_true",
                        help="also every method of installed plugins (attribkit-captum: many, slow)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    torch.manual_seed(0)
    n_train, epochs, n_bench, dpi = (64, 1, 4, 40) if args.quick else (1000, 3, 16, 100)

    start = time.perf_counter()
    x_train, y_train, _ = make_shapes(n_train, seed=1)
    x_test, y_test, masks = make_shapes(max(16, n_bench), seed=2)
    model = ShapeNet()
    untrained = copy.deepcopy(model).eval()
    model = train(model, ak.normalize(x_train, MEAN, STD), y_train, epochs)
    inputs = ak.normalize(x_test, MEAN, STD)
    with torch.no_grad():
        accuracy = (model(inputs).argmax(1) == y_test).float().mean().item()
    print(f"trained ShapeNet in {time.perf_counter() - start:.1f} s: test accuracy {accuracy:.1%}")

    shown = inputs[:4]
    methods = runnable_methods(model, shown, args.methods.split(",") if args.methods else None,
                               args.all_plugins)
    print("methods that run:", ", ".join(methods))
    display = dict(mean=MEAN, std=STD, class_names=CLASSES)
    written = []

    def keep(fig, name: str) -> None:
        written.append(ak.save(fig, out / f"{name}.png", dpi=dpi))
        print("wrote", written[-1])

    saliency = ak.explain(model, shown[:3], method="saliency", abs=False)
    keep(ak.show(saliency, shown[:3], mode=list(MODES), sign="absolute_value", **display), "modes")
    keep(ak.show(saliency, shown[:3], mode=["heat_map"] * 4, sign=list(SIGNS),
                 colorbar=True, **display), "signs")
    keep(ak.show_panels(model, shown[:3], method="saliency", **display), "panels")
    families: dict[str, list[str]] = {}
    for name in methods:
        families.setdefault(ak.get_method(name).family, []).append(name)
    for family, names in families.items():
        keep(ak.compare(model, shown, methods=names, show_image=True, title=f"{family} methods",
                        **display), f"compare_{family}")
    layer_method = next((m for m in ("gradcam", "example.activation_map") if m in methods), "saliency")
    keep(ak.compare_models({"untrained": untrained, "trained": model}, shown, method=layer_method,
                           show_image=True, **display), "before_after")

    # docs/transformers.md: the attention family beside token Grad-CAM and saliency on a ViT
    vit = small_vit()
    if vit is None:
        print("no timm: transformers.png left out")
    else:
        vit = train(vit, ak.normalize(x_train, MEAN, STD), y_train, 2 * epochs)
        with torch.no_grad():
            vit_accuracy = (vit(inputs).argmax(1) == y_test).float().mean().item()
        print(f"trained a small ViT: test accuracy {vit_accuracy:.1%}")
        keep(ak.compare(vit, shown, methods=list(VIT_METHODS), show_image=True,
                        title=f"small ViT, 10x10 patches (test accuracy {vit_accuracy:.0%})", **display),
             "transformers")

    # benchmark plots on the test images: the evidence masks are the ground truth
    batch, batch_masks = inputs[:n_bench], masks[:n_bench]
    with torch.no_grad():
        targets = model(batch).argmax(1)
    speed, curves, table = {}, {"deletion": {}, "insertion": {}}, {}
    for name in methods:
        result = ak.explain(model, batch, targets, method=name)
        maps = pixel_maps(result)
        speed[name] = time_method(lambda: ak.explain(model, batch, targets, method=name),
                                  repeats=1 if args.quick else 3)
        for kind, values in perturbation_curves(model, batch, targets, maps).items():
            curves[kind][name] = values
        # the area under the mean curve over the range of fractions: the mean score along it
        area = {kind: curve_auc(curves[kind][name].mean(0), FRACTIONS) / FRACTIONS[-1] for kind in curves}
        table[name] = {**localisation(maps, batch_masks),
                       "deletion AUC": area["deletion"], "insertion AUC": area["insertion"]}

    def forward_backward() -> None:
        x = batch.clone().requires_grad_(True)
        torch.autograd.grad(model(x)[torch.arange(len(x)), targets].sum(), x)

    floor = float(np.median(time_method(forward_backward, repeats=1 if args.quick else 5)))
    keep(ak.plot_speed(speed, floor=floor, floor_label="forward + backward", log=True,
                       title=f"time per batch of {len(batch)} (CPU)"), "speed")
    keep(ak.plot_curves(curves, x=FRACTIONS, title="deletion / insertion on the shapes model"), "curves")
    keep(ak.plot_metric_table(table, higher_is_better={"deletion AUC": False},
                              title="faithfulness and localisation"), "metrics")
    return written


if __name__ == "__main__":
    main()
