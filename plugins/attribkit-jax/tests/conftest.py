"""Fixtures of the attribkit-jax tests: one small CNN as PyTorch (attribkit's TinyCNN) and
as its Flax twins, linen and NNX, with the torch weights copied in (conv kernels OIHW ->
HWIO, the inputs NHWC), and 3 images of 8x8."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from attribkit.testing import TinyCNN, isolated_host  # noqa: E402

jax = pytest.importorskip("jax")
flax = pytest.importorskip("flax")

torch.set_num_threads(1)

from jax_twins import CLASSES, WIDTHS, LinenCNN, linen_variables, nnx_model  # noqa: E402

@pytest.fixture(autouse=True)
def fresh_host():
    with isolated_host():
        yield


@pytest.fixture(scope="session")
def torch_model():
    torch.manual_seed(0)
    net = TinyCNN(CLASSES, widths=WIDTHS).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        net.features[1].running_mean.uniform_(-0.2, 0.2)
        net.features[1].running_var.uniform_(0.5, 1.5)
    import attribkit as ak  # the first PyTorch CAM call imports its kernels (seconds): once, here

    ak.explain(net, torch.zeros(1, 3, 8, 8), method="gradcam", layer="features.3")
    return net


@pytest.fixture(scope="session")
def variables(torch_model):
    return linen_variables(torch_model)


@pytest.fixture(scope="session")
def linen(variables):
    return LinenCNN().bind(variables)


@pytest.fixture(scope="session")
def nnx_cnn(torch_model):
    return nnx_model(torch_model)


@pytest.fixture(scope="session")
def function(variables):
    """``f(params, x)``: the linen model applied as a plain function."""
    def f(params, x):
        return LinenCNN().apply(params, x, train=False)

    return f


@pytest.fixture(scope="session")
def images():
    torch.manual_seed(1)
    return torch.randn(3, 3, 8, 8)


@pytest.fixture(scope="session")
def nhwc(images):
    return np.ascontiguousarray(images.numpy().transpose(0, 2, 3, 1))
