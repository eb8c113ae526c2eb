"""Models of other frameworks (issue 27): attribkit's JAX backend against one jitted
``jax.value_and_grad`` forward + backward of the same Flax model and batch (target: <= 1.2x).

A ResNet-ish linen CNN (stem, two stages of two residual blocks with BatchNorm, 32 and 64
channels, global pooling, 10 classes; random weights), a batch of
``ATTRIBKIT_BENCH_JAX_BATCH`` (default 32) images of ``ATTRIBKIT_BENCH_JAX_SIZE`` (default
64) px, NHWC, the targets one int per image. The floor is the jitted gradient of the
target logits with respect to the input, ``block_until_ready``; attribkit's calls are
``ak.explain(model, x, targets, method=m)`` for ``saliency`` and ``gradcam`` (layer: the
last stage), NumPy in and out, compiled once before timing.

``pytest benchmarks/test_bench_frameworks.py --benchmark-only -s``: ``test_jax_interleaved``
runs the three calls round-robin (``ATTRIBKIT_BENCH_ROUNDS``, default 5, after a warm-up
round) and prints each median and its ratio to the floor (also in ``extra_info``); the
parametrised tests time each call on its own for the summary table.
Measured (2 shared CPU cores, JAX 0.10.2 on CPU, defaults, 15 rounds): see the
JAX / Flax section of docs/frameworks.md.
"""

import os

import numpy as np
import pytest

from benchmarks.shared import interleaved, jax_calls

jax = pytest.importorskip("jax")
nn = pytest.importorskip("flax.linen")
pytest.importorskip("attribkit_jax")


class Block(nn.Module):
    width: int
    stride: int = 1

    @nn.compact
    def __call__(self, x, train: bool = False):
        y = nn.Conv(self.width, (3, 3), self.stride, padding=1, use_bias=False)(x)
        y = nn.relu(nn.BatchNorm(use_running_average=not train)(y))
        y = nn.Conv(self.width, (3, 3), padding=1, use_bias=False)(y)
        y = nn.BatchNorm(use_running_average=not train)(y)
        if x.shape[-1] != self.width or self.stride != 1:
            x = nn.Conv(self.width, (1, 1), self.stride, use_bias=False)(x)
        return nn.relu(x + y)


class SmallResNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Conv(32, (3, 3), padding=1)(x))
        x = Block(32, name="stage1_0")(x, train)
        x = Block(32, name="stage1_1")(x, train)
        x = Block(64, 2, name="stage2_0")(x, train)
        x = Block(64, name="stage2_1")(x, train)
        return nn.Dense(10)(x.mean((1, 2)))


@pytest.fixture(scope="module")
def setup():
    batch = int(os.environ.get("ATTRIBKIT_BENCH_JAX_BATCH", 32))
    size = int(os.environ.get("ATTRIBKIT_BENCH_JAX_SIZE", 64))
    net = SmallResNet()
    variables = net.init(jax.random.PRNGKey(0), jax.numpy.zeros((1, size, size, 3)))
    model = net.bind(variables)
    x = np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)
    targets = np.arange(batch) % 10

    return jax_calls(lambda x: net.apply(variables, x), model, x, targets, "stage2_1")


@pytest.mark.parametrize("impl", ["floor", "saliency", "gradcam"])
def test_jax_backend(run, benchmark, setup, impl):
    benchmark.group = "jax-small-resnet"
    run(setup[impl], "floor" if impl == "floor" else "attribkit", "value_and_grad" if impl == "floor" else impl)


def test_jax_interleaved(benchmark, setup):
    interleaved(benchmark, setup, "jax", "jax-small-resnet-interleaved")
