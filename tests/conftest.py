import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from attribkit.host import reset_host  # noqa: E402
from tests.models import TinyCNN  # noqa: E402


# Tiny forwards on a shared 2-core machine are far faster single-threaded.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def fresh_host(monkeypatch):
    """Each test sees a host built from the current environment and sys.path."""
    monkeypatch.delenv("ATTRIBKIT_STRICT_PLUGINS", raising=False)
    monkeypatch.delenv("ATTRIBKIT_DISABLE_PLUGINS", raising=False)
    reset_host()
    yield
    reset_host()


@pytest.fixture
def tiny_cnn():
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(4, 3, 12, 12)
