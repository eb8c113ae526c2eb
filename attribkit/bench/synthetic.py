"""Synthetic images with known evidence: the ground truth for faithfulness.

Each image is a cluttered scene (a smooth random-colour background, noise,
distractor discs and line segments) with one small **class pattern** at a
random position and in a random colour. The class is decided only by the
pattern's *shape*: colour, position, background and distractors carry no class
signal. The pattern's bounding box is recorded as the image's **evidence
mask**, so localisation metrics have ground truth.

With ``spurious=True`` the background colour is tied to the class with
probability ``spurious_p`` (a shortcut a model can learn instead of the shape);
test splits are made with ``spurious=False`` to break the cue.

Pure NumPy and deterministic from the seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

PATTERN = 12  # side of the class pattern, pixels


def _templates(s: int = PATTERN) -> dict[str, np.ndarray]:
    """Binary ``(s, s)`` shape templates, one per class."""
    yy, xx = np.mgrid[0:s, 0:s]
    c = (s - 1) / 2
    r = np.hypot(yy - c, xx - c)
    t = {
        "square": np.ones((s, s), bool),
        "ring": (r <= c) & (r >= c - 2.2),
        "plus": (np.abs(yy - c) <= 1.5) | (np.abs(xx - c) <= 1.5),
        "cross": (np.abs(yy - xx) <= 1.2) | (np.abs(yy + xx - (s - 1)) <= 1.2),
        "hstripes": (yy // 2) % 2 == 0,
        "checker": ((yy // 3) + (xx // 3)) % 2 == 0,
        "triangle": (yy >= np.abs(xx - c) * 1.6 - 1) & (yy <= s - 2),
        "vstripes": (xx // 2) % 2 == 0,
        "frame": (np.minimum(np.minimum(yy, xx), np.minimum(s - 1 - yy, s - 1 - xx)) < 2),
        "diamond": (np.abs(yy - c) + np.abs(xx - c)) <= c,
    }
    return t


TEMPLATES = _templates()
CLASS_NAMES = tuple(TEMPLATES)
# background hues used by the spurious cue, one per class
_CUE_COLOURS = np.array([[0.75, 0.35, 0.35], [0.35, 0.7, 0.35], [0.35, 0.4, 0.78], [0.75, 0.7, 0.3],
                         [0.65, 0.35, 0.7], [0.3, 0.7, 0.72], [0.55, 0.55, 0.55], [0.8, 0.5, 0.25],
                         [0.45, 0.3, 0.2], [0.2, 0.45, 0.3]])


@dataclasses.dataclass
class SyntheticData:
    """``images`` ``(N, 3, H, W)`` float32 in [0, 1], ``labels`` ``(N,)`` int64,
    ``masks`` ``(N, H, W)`` bool evidence masks, ``class_names``."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def make_dataset(n: int, *, size: int = 64, classes: int = 6, seed: int = 0,
                 spurious: bool = False, spurious_p: float = 0.9, distractors: int = 6,
                 centred: bool = False) -> SyntheticData:
    """Generate ``n`` images of ``classes`` classes (4..10), deterministic from ``seed``.

    ``centred=True`` places the pattern near the image centre (the setting of
    the centre-kernel CAM loss experiment).
    """
    if not 2 <= classes <= len(TEMPLATES):
        raise ValueError(f"classes must be in 2..{len(TEMPLATES)}, got {classes}")
    rng = np.random.default_rng(seed)
    names = CLASS_NAMES[:classes]
    labels = rng.integers(0, classes, size=n)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        if spurious and rng.random() < spurious_p:
            base = _CUE_COLOURS[labels[i]]
        else:
            base = _CUE_COLOURS[rng.integers(0, len(_CUE_COLOURS))]
        base = base + rng.normal(0, 0.04, 3)
        tilt = rng.normal(0, 0.12, (2, 3))
        img = base + yy[..., None] * tilt[0] + xx[..., None] * tilt[1]
        img = img + rng.normal(0, 0.03, img.shape)
        for _ in range(distractors):
            colour = rng.uniform(0, 1, 3)
            if rng.random() < 0.5:  # a disc
                cy, cx = rng.uniform(0, 1, 2)
                rad = rng.uniform(0.03, 0.09)
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < rad**2] = colour
            else:  # a line segment
                y0, x0 = rng.uniform(0, 1, 2)
                ang, length = rng.uniform(0, np.pi), rng.uniform(0.15, 0.4)
                t = np.linspace(0, length, 60)
                py = np.clip(((y0 + t * np.sin(ang)) * size).astype(int), 0, size - 1)
                px = np.clip(((x0 + t * np.cos(ang)) * size).astype(int), 0, size - 1)
                img[py, px] = colour
        template = TEMPLATES[names[labels[i]]]
        s = template.shape[0]
        if centred:
            top, left = (size - s) // 2 + rng.integers(-4, 5, 2)
        else:
            top, left = rng.integers(1, size - s - 1, 2)
        colour = rng.uniform(0, 1, 3)
        while np.abs(colour - img[top:top + s, left:left + s].mean((0, 1))).sum() < 0.6:
            colour = rng.uniform(0, 1, 3)  # keep the pattern visible on its background
        patch = img[top:top + s, left:left + s]
        patch[template] = colour
        masks[i, top:top + s, left:left + s] = True
        images[i] = np.clip(img, 0, 1)
    return SyntheticData(images.transpose(0, 3, 1, 2).copy(), labels.astype(np.int64), masks, names)
