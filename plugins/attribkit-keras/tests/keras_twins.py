"""The same small CNNs in PyTorch and Keras, the Keras weights copied from the PyTorch ones.

Conv2D kernels are OIHW -> HWIO, Dense kernels transposed, BatchNorm's four vectors copied;
a Keras model takes the PyTorch model's images transposed to NHWC. ``LAYERS`` maps a Keras
layer's name to its PyTorch twin's module.
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from torch import nn

from attribkit.testing import TinyCNN

#: Keras layer name -> PyTorch module name, for the layer methods
LAYERS = {"conv1": "features.0", "relu1": "features.2", "conv2": "features.3", "relu2": "features.4"}
SKIP_LAYERS = {"conv1": "conv1", "relu1": "relu1", "conv2": "conv2", "add": "add"}


def torch_cnn() -> nn.Module:
    """attribkit's TinyCNN (6 and 8 channels, 4 classes) with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    net = TinyCNN(4, widths=(6, 8)).eval()
    with torch.no_grad():
        net.features[1].running_mean.uniform_(-0.2, 0.2)
        net.features[1].running_var.uniform_(0.5, 1.5)
        net.features[1].weight.uniform_(0.5, 1.5)
        net.features[1].bias.uniform_(-0.2, 0.2)
    return net


def keras_cnn(net: nn.Module, size: int = 8) -> keras.Model:
    """The Keras twin of :func:`torch_cnn`'s ``net`` (Sequential, NHWC)."""
    L = keras.layers
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        L.Conv2D(6, 3, padding="same", name="conv1"),
        L.BatchNormalization(epsilon=net.features[1].eps, name="bn1"),
        L.ReLU(name="relu1"),
        L.Conv2D(8, 3, padding="same", name="conv2"),
        L.ReLU(name="relu2"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dropout(0.5, name="drop"),
        L.Dense(4, name="fc"),
    ], name="twin")
    bn = net.features[1]
    model.get_layer("conv1").set_weights(_conv(net.features[0]))
    model.get_layer("bn1").set_weights([_np(bn.weight), _np(bn.bias), _np(bn.running_mean), _np(bn.running_var)])
    model.get_layer("conv2").set_weights(_conv(net.features[3]))
    model.get_layer("fc").set_weights(_dense(net.fc))
    return model


class Add(nn.Module):
    """``a + b`` as a module, so that the sum is a layer of the PyTorch twin too."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class SkipNet(nn.Module):
    """conv1 -> ReLU = h; conv2(h) + h -> ReLU -> GAP -> linear: a skip connection."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()
        self.conv2, self.add, self.relu2 = nn.Conv2d(6, 6, 3, padding=1), Add(), nn.ReLU()
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu1(self.conv1(x))
        return self.fc(self.relu2(self.add(self.conv2(h), h)).mean((2, 3)))


def torch_skip() -> nn.Module:
    torch.manual_seed(2)
    return SkipNet().eval()


def keras_skip(net: SkipNet, size: int = 8) -> keras.Model:
    """The functional Keras twin of ``net``: the Add reads conv2's output and relu1's."""
    L = keras.layers
    inputs = keras.Input((size, size, 3))
    h = L.ReLU(name="relu1")(L.Conv2D(6, 3, padding="same", name="conv1")(inputs))
    y = L.Add(name="add")([L.Conv2D(6, 3, padding="same", name="conv2")(h), h])
    outputs = L.Dense(3, name="fc")(L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="relu2")(y)))
    model = keras.Model(inputs, outputs, name="skip")
    model.get_layer("conv1").set_weights(_conv(net.conv1))
    model.get_layer("conv2").set_weights(_conv(net.conv2))
    model.get_layer("fc").set_weights(_dense(net.fc))
    return model


def nhwc(x: torch.Tensor) -> np.ndarray:
    """A channel-first torch batch as the NHWC NumPy batch of a Keras model."""
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def weights(model: keras.Model) -> list[np.ndarray]:
    """Copies of every weight of ``model`` (trainable or not)."""
    return [np.array(keras.ops.convert_to_numpy(v.value)) for v in model.variables]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy().copy()


def _conv(conv: nn.Conv2d) -> list[np.ndarray]:
    return [_np(conv.weight.permute(2, 3, 1, 0)), _np(conv.bias)]


def _dense(linear: nn.Linear) -> list[np.ndarray]:
    return [_np(linear.weight.T), _np(linear.bias)]


def keras_kwargs(model: keras.Model) -> dict:
    """``{}`` when the core routes ``model`` to the keras backend by itself; ``{"backend": "keras"}``
    while it takes a Keras model on the PyTorch backend (an ``nn.Module``) for a PyTorch one."""
    from attribkit.backends.run import find_backend

    spec = find_backend(model, {})
    return {} if spec is not None and spec.name == "keras" else {"backend": "keras"}
