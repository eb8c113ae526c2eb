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
import flax.linen as nn  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

torch.set_num_threads(1)
WIDTHS, CLASSES = (6, 8), 4


class LinenCNN(nn.Module):
    """TinyCNN in linen: conv1 -> bn -> relu -> conv2 -> relu -> mean -> dropout -> fc."""

    classes: int = CLASSES

    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.Conv(WIDTHS[0], (3, 3), padding=1, name="conv1")(x)
        x = nn.BatchNorm(use_running_average=not train, epsilon=1e-5, name="bn")(x)
        x = nn.relu(x)
        x = nn.relu(nn.Conv(WIDTHS[1], (3, 3), padding=1, name="conv2")(x))
        x = nn.Dropout(0.5, deterministic=not train)(x.mean((1, 2)))
        return nn.Dense(self.classes, name="fc")(x)


class NnxCNN(nnx.Module):
    """TinyCNN in NNX, Dropout and BatchNorm in training mode as constructed (Dropout without
    a key: a call in training mode would fail)."""

    def __init__(self, rngs):
        self.conv1 = nnx.Conv(3, WIDTHS[0], (3, 3), padding=1, rngs=rngs)
        self.bn = nnx.BatchNorm(WIDTHS[0], epsilon=1e-5, rngs=rngs)
        self.conv2 = nnx.Conv(WIDTHS[0], WIDTHS[1], (3, 3), padding=1, rngs=rngs)
        self.drop = nnx.Dropout(0.5)
        self.fc = nnx.Linear(WIDTHS[1], CLASSES, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv1(x)))
        x = nnx.relu(self.conv2(x))
        return self.fc(self.drop(x.mean((1, 2))))


def _hwio(conv):
    return jnp.asarray(conv.weight.detach().numpy().transpose(2, 3, 1, 0))


def _arr(t):
    return jnp.asarray(t.detach().numpy())


def linen_variables(net):
    f = net.features
    return {"params": {"conv1": {"kernel": _hwio(f[0]), "bias": _arr(f[0].bias)},
                       "bn": {"scale": _arr(f[1].weight), "bias": _arr(f[1].bias)},
                       "conv2": {"kernel": _hwio(f[3]), "bias": _arr(f[3].bias)},
                       "fc": {"kernel": _arr(net.fc.weight.T), "bias": _arr(net.fc.bias)}},
            "batch_stats": {"bn": {"mean": _arr(f[1].running_mean), "var": _arr(f[1].running_var)}}}


def _set(variables, values):
    for variable, value in zip(variables, values):
        variable.set_value(value)


def nnx_model(net):
    model = nnx.eval_shape(lambda: NnxCNN(nnx.Rngs(0)))  # abstract: every array is set below
    f = net.features
    _set((model.conv1.kernel, model.conv1.bias), (_hwio(f[0]), _arr(f[0].bias)))
    _set((model.bn.scale, model.bn.bias), (_arr(f[1].weight), _arr(f[1].bias)))
    _set((model.bn.mean, model.bn.var), (_arr(f[1].running_mean), _arr(f[1].running_var)))
    _set((model.conv2.kernel, model.conv2.bias), (_hwio(f[3]), _arr(f[3].bias)))
    _set((model.fc.kernel, model.fc.bias), (_arr(net.fc.weight.T), _arr(net.fc.bias)))
    return model


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
