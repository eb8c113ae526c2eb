import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from attribkit.testing import TinyCNN, isolated_host  # noqa: E402


# Tiny forwards on a shared 2-core machine are far faster single-threaded.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_host():
    """Each test sees a host built from the current environment and sys.path."""
    with isolated_host():
        yield


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(4, 3, 12, 12)


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


@pytest.fixture(scope="module")
def vgg11():
    torch.manual_seed(0)
    return torchvision.models.vgg11(num_classes=10).eval()
