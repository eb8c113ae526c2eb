"""What the CAM test files share: the method lists (read from the registry) and the
small models with a known structure (the torchvision fixtures are in conftest.py)."""

from torch import nn

import attribkit as ak

BUILT_IN = [s for s in ak.methods(family="cam") if s.plugin == "attribkit.families.cam"]
CAM_METHODS = [s.name for s in BUILT_IN]
# Grad-CAM and the methods that, like it, weight the layer's channels by its gradients
GRADIENT_CAMS = [s.name for s in BUILT_IN if "autograd" in s.needs and s.output == "layer"]
FORWARD_ONLY = [s.name for s in BUILT_IN if "autograd" not in s.needs]
# Score-CAM and Ablation-CAM: one forward per channel, in batches of forward_batch_size rows
PER_CHANNEL = [s.name for s in BUILT_IN if "forward_batch_size" in s.options]


class Segmenter(nn.Module):
    """A fully convolutional model: per-pixel scores for 3 classes, (B, 3, H, W)."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x):
        return self.head(self.body(x))


def region_score(scores):
    """A callable target for :class:`Segmenter`: class 1's scores summed over a square."""
    return scores[:, 1, 2:6, 2:6].sum(dim=(1, 2))


class Twice(nn.Module):
    """Calls ``block`` twice; ``Unrolled`` is the same network with two modules."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.block(self.block(self.stem(x))).mean((2, 3)))


class Unrolled(nn.Module):
    def __init__(self, twice):
        super().__init__()
        self.stem, self.first, self.second, self.fc = twice.stem, twice.block, \
            nn.Sequential(*twice.block), twice.fc

    def forward(self, x):
        return self.fc(self.second(self.first(self.stem(x))).mean((2, 3)))
