"""Fixtures of the attribkit-keras tests: the Keras twin of a small PyTorch CNN, 3 images of 8x8.

Keras' backend is fixed when keras is imported: these tests run on ``KERAS_BACKEND`` (``jax``
unless set), and ``test_keras_backends.py`` runs them again in a subprocess on the other one.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("MPLBACKEND", "Agg")

import keras  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attribkit.testing import isolated_host  # noqa: E402

import keras_twins  # noqa: E402

torch.set_num_threads(1)  # two shared CPU cores: tiny forwards with spinning threads are ~100x slower


def pytest_report_header(config):
    return f"keras {keras.__version__} on the {keras.backend.backend()} backend"


@pytest.fixture(autouse=True)
def fresh_host():
    with isolated_host():
        yield


@pytest.fixture(scope="session")
def nets():
    """``(torch_model, keras_model)``: the same CNN (one Keras model per session: JAX jits once)."""
    net = keras_twins.torch_cnn()
    return net, keras_twins.keras_cnn(net)


@pytest.fixture(scope="session")
def skip_nets():
    net = keras_twins.torch_skip()
    return net, keras_twins.keras_skip(net)


@pytest.fixture
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 8, 8)
