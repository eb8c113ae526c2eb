"""Fixtures of the attribkit-captum tests: a small CNN, 3 images of 3x8x8, 3 targets."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from attribkit.testing import RaiseOnCall, TinyCNN, isolated_host  # noqa: E402,F401 - RaiseOnCall re-exported for the tests

# Two shared CPU cores: intra-op threads spinning against other processes make
# tiny forwards ~100x slower; these tests run thousands of tiny forwards.
torch.set_num_threads(1)


def SmallCNN(classes: int = 4) -> nn.Module:  # noqa: N802 - reads as the model class
    """attribkit's TinyCNN at this suite's size (6 and 8 channels, 4 classes)."""
    return TinyCNN(classes, widths=(6, 8))


@pytest.fixture(autouse=True)
def fresh_host():
    with isolated_host():
        yield


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
