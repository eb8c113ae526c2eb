"""Models of other frameworks (issue 27): attribkit's Keras backend (on Keras' JAX backend)
against one jitted ``jax.value_and_grad`` forward + backward of the same Keras model and batch.

A ResNet-ish functional Keras CNN (stem, two stages of two residual blocks with BatchNorm,
32 and 64 channels, global pooling, 10 classes; random weights), a batch of
``ATTRIBKIT_BENCH_KERAS_BATCH`` (default 32) images of ``ATTRIBKIT_BENCH_KERAS_SIZE``
(default 64) px, NHWC, the targets one int per image. The floor is the jitted gradient of the
target logits with respect to the input over ``model.stateless_call``, ``block_until_ready``;
attribkit's calls are ``ak.explain(model, x, targets, method=m)`` for ``saliency`` and
``gradcam`` (layer: the last block's output), NumPy in and out, compiled once before timing.

``pytest benchmarks/test_bench_frameworks_keras.py --benchmark-only -s``:
``test_keras_interleaved`` runs the three calls round-robin (``ATTRIBKIT_BENCH_ROUNDS``,
default 5, after the compiling round) and prints each median and its ratio to the floor
(also in ``extra_info``); the parametrised tests time each call on its own for the summary.
Keras' backend is fixed at import: the file sets ``KERAS_BACKEND=jax`` unless set, and skips
when Keras runs on another backend. Measured: the Keras 3 section of docs/frameworks.md.
"""

import os

import numpy as np
import pytest

from benchmarks.shared import interleaved, jax_calls

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
jax = pytest.importorskip("jax")
pytest.importorskip("attribkit_keras")
if keras.backend.backend() != "jax":
    pytest.skip("the Keras benchmark runs on Keras' JAX backend", allow_module_level=True)


def block(x, width, stride, name):
    L = keras.layers
    y = L.Conv2D(width, 3, stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = L.ReLU()(L.BatchNormalization(name=f"{name}_bn1")(y))
    y = L.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = L.BatchNormalization(name=f"{name}_bn2")(y)
    if x.shape[-1] != width or stride != 1:
        x = L.Conv2D(width, 1, stride, use_bias=False, name=f"{name}_proj")(x)
    return L.ReLU(name=name)(L.Add()([x, y]))


def small_resnet(size):
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="stem")(inputs)
    for width, stride, name in ((32, 1, "stage1_0"), (32, 1, "stage1_1"), (64, 2, "stage2_0"), (64, 1, "stage2_1")):
        x = block(x, width, stride, name)
    outputs = keras.layers.Dense(10, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs, name="small_resnet")


@pytest.fixture(scope="module")
def setup():
    batch = int(os.environ.get("ATTRIBKIT_BENCH_KERAS_BATCH", 32))
    size = int(os.environ.get("ATTRIBKIT_BENCH_KERAS_SIZE", 64))
    keras.utils.set_random_seed(0)
    model = small_resnet(size)
    x = np.random.default_rng(0).standard_normal((batch, size, size, 3)).astype(np.float32)
    targets = np.arange(batch) % 10
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    return jax_calls(lambda x: model.stateless_call(trainable, non_trainable, x, training=False)[0], model, x,
                     targets, "stage2_1")


@pytest.mark.parametrize("impl", ["floor", "saliency", "gradcam"])
def test_keras_backend(run, benchmark, setup, impl):
    benchmark.group = "keras-jax-small-resnet"
    run(setup[impl], "floor" if impl == "floor" else "attribkit", "value_and_grad" if impl == "floor" else impl)


def test_keras_interleaved(benchmark, setup):
    interleaved(benchmark, setup, "keras (jax)", "keras-jax-small-resnet-interleaved")
