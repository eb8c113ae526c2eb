"""Fixtures of the attribkit-captum tests: a small CNN, 3 images of 3x8x8, 3 targets."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from attribkit.host import reset_host  # noqa: E402

# Two shared CPU cores: intra-op threads spinning against other processes make
# tiny forwards ~100x slower; these tests run thousands of tiny forwards.
torch.set_num_threads(1)


class SmallCNN(nn.Module):
    """conv -> relu -> conv -> relu -> GAP -> linear (no Flatten module: LRP has no rule
    for it), with a BatchNorm and a Dropout so that train/eval mode matters."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.drop(self.pool(self.features(x)).flatten(1)))


class RaiseOnCall(nn.Module):
    """Wraps a model; raises in forward on call number ``n`` (1: attribkit's target
    probe; 2: the first forward inside Captum, after Captum set its hooks)."""

    def __init__(self, inner: nn.Module, n: int) -> None:
        super().__init__()
        self.inner = inner
        self.n = n
        self.calls = []  # mutated in place: no module attribute changes

    def forward(self, x):
        self.calls.append(len(x))
        out = self.inner(x)
        if len(self.calls) >= self.n:
            raise RuntimeError("boom in forward")
        return out


@pytest.fixture(autouse=True)
def fresh_host(monkeypatch):
    monkeypatch.delenv("ATTRIBKIT_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ATTRIBKIT_DISABLE_PLUGINS", raising=False)
    reset_host()
    yield
    reset_host()


@pytest.fixture
def model():
    torch.manual_seed(0)
    net = SmallCNN().eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.features[1].running_mean.uniform_(-0.2, 0.2)
        net.features[1].running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 8, 8)


@pytest.fixture
def targets():
    return torch.tensor([0, 1, 2])
