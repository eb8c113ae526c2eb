"""Small models shared by the tests."""

from torch import nn


class TinyCNN(nn.Module):
    """conv -> relu -> conv -> relu -> GAP -> linear, with a dropout and a BatchNorm
    so that train/eval mode matters."""

    def __init__(self, classes: int = 5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


class Raising(nn.Module):
    """Wraps a model and raises inside forward after its hooks have run."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        self.inner(x)
        raise RuntimeError("boom in forward")
