"""The Flax twins of attribkit's TinyCNN (linen and NNX) and the copy of its torch weights
into them. A module of its own (not conftest): the Keras plugin's tests have a conftest too,
and `make test` collects both suites in one session."""

import flax.linen as nn
import jax.numpy as jnp
from flax import nnx

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


