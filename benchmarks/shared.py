"""What the pytest-benchmark suites and ``benchmarks/gpu.sh`` share: the cost floors,
the list of attribkit's own methods of a family, the LRP bench's model, and the
pixel-flipping calls (attribkit, Quantus, the floor), so that both time the same code.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

import attribkit as ak

# options of the methods that run one forward (and backward) per channel or noisy sample
SLOW_OPTIONS = {"forward_batch_size", "n_samples"}


# ---------------------------------------------------------------- floors


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One forward without gradients: the floor of forward-only methods."""
    with torch.no_grad():
        return model(x)


def forward_backward(model: nn.Module, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One forward and one backward of the target logits to the input: the floor of
    gradient methods."""
    x = x.detach().requires_grad_()
    return torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)[0]


def floor_of(spec: ak.MethodSpec) -> str:
    """``"forward+backward"`` for a method that needs autograd, else ``"forward"``."""
    return "forward+backward" if "autograd" in spec.needs else "forward"


# ---------------------------------------------------------------- methods


def built_in(family: str, every: bool | None = None, **required: object) -> list[str]:
    """The names of attribkit's own methods of ``family`` whose spec has the ``required``
    attribute values; the slow ones (one forward per channel or noisy sample) only when
    ``every`` (default: ``ATTRIBKIT_BENCH_ALL=1``)."""
    if every is None:
        every = os.environ.get("ATTRIBKIT_BENCH_ALL") == "1"
    return [s.name for s in ak.methods(family=family)
            if s.plugin == f"attribkit.families.{family}"
            and all(getattr(s, key) == value for key, value in required.items())
            and (every or not SLOW_OPTIONS & set(s.options))]


# ---------------------------------------------------------------- LRP


def lrp_model(name: str, device: torch.device) -> nn.Module:
    """torchvision's ``name`` with random weights (seed 0) and non-trivial BatchNorm
    statistics, so that canonizing (merging BatchNorm into convolutions) does real work."""
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision_model(name)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model.to(device)


def torchvision_model(name: str) -> nn.Module:
    """torchvision's ``name`` with random weights, in eval mode."""
    import torchvision

    return torchvision.models.get_model(name).eval()


def lrp_variant(composite: str) -> str:
    """The bench's name of LRP with ``composite`` (its Zennit peer is filed under it in
    ``attribkit.bench.peers``)."""
    return "lrp" if composite == ak.get_method("lrp").options["composite"] else f"lrp.{composite}"


# ---------------------------------------------------------------- pixel flipping


class TinyCNN(nn.Module):
    """One conv of 8 channels, ReLU, global average pooling, a linear head (the kind
    of model Quantus's own tests use), on one-channel images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


class PixelLinear(nn.Module):
    """A linear classifier on the pixels of one-channel ``size`` x ``size`` images."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.fc = nn.Linear(size * size, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def pixel_flipping_setup(kind: str, n: int, size: int, device: torch.device
                         ) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(model, x, y, a)``: model ``kind`` (``"cnn"`` or ``"linear"``), ``n`` random
    one-channel images, their predicted classes and random relevance (seed 0)."""
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = (TinyCNN() if kind == "cnn" else PixelLinear(size)).eval().to(device)
    x = torch.rand(n, 1, size, size, generator=gen).to(device)
    a = torch.rand(n, size, size, generator=gen).to(device)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y, a


def attribkit_pixel_flipping(model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor,
                             rows: int) -> torch.Tensor:
    """attribkit's per-image pixel-flipping AUC, one pixel per step, ``rows`` perturbed
    images per model call."""
    options = {"pixel_flipping": {"features_in_step": 1}}
    return ak.evaluate(model, x, a, y, metrics=["pixel_flipping"], options=options,
                       batch_size=rows)["pixel_flipping"].scores


def quantus_pixel_flipping(model: nn.Module, x: torch.Tensor, y: torch.Tensor, a: torch.Tensor) -> list:
    """Quantus's ``PixelFlipping`` with the same settings (per-image AUC), one batch.
    Run it inside :func:`numpy_trapz` under NumPy 2."""
    import quantus

    metric = quantus.PixelFlipping(features_in_step=1, return_auc_per_sample=True, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(model=model, x_batch=x.cpu().numpy(), y_batch=y.cpu().numpy(),
                      a_batch=a[:, None].cpu().numpy(), channel_first=True, device=str(x.device),
                      softmax=True, batch_size=len(x))


def pixel_flipping_floor(model: nn.Module, x: torch.Tensor, rows: int) -> None:
    """All ``N * H * W`` forwards of pixel flipping on an already perturbed batch
    (no perturbation work), ``rows`` images per call."""
    n = len(x)
    total = n * x.shape[-2] * x.shape[-1]
    with torch.no_grad():
        for start in range(0, total, rows):
            model(x[torch.arange(start, min(start + rows, total), device=x.device) % n])


@contextlib.contextmanager
def numpy_trapz() -> Iterator[None]:
    """``np.trapz`` (gone in NumPy 2, called by Quantus 0.6's per-sample AUC) as
    ``np.trapezoid`` inside the block; restored after it."""
    missing = object()
    old = np.__dict__.get("trapz", missing)
    if hasattr(np, "trapezoid"):
        np.trapz = np.trapezoid
    try:
        yield
    finally:
        if old is missing:
            np.__dict__.pop("trapz", None)
        else:
            np.trapz = old


def interleaved(benchmark, calls: dict, label: str, group: str) -> dict[str, float]:
    """Time ``calls`` (name -> thunk, one named ``"floor"``) round-robin for
    ``ATTRIBKIT_BENCH_ROUNDS`` rounds (a shared machine's load then weighs on all alike),
    record each median and its ratio to the floor's in ``benchmark.extra_info``, print them
    and return the ratios."""
    import statistics
    import time

    rounds = int(os.environ.get("ATTRIBKIT_BENCH_ROUNDS", 5))
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {name: median / medians["floor"] for name, median in medians.items()}
    for name, median in medians.items():
        benchmark.extra_info[name] = {"median_ms": median * 1e3, "ratio": ratios[name]}
        print(f"\n{label} interleaved {name}: median {median * 1e3:.1f} ms, {ratios[name]:.2f}x the floor")
    benchmark.group = group
    benchmark.extra_info["role"] = "floor"
    benchmark.pedantic(calls["floor"], rounds=1, iterations=1)
    return ratios


def jax_calls(apply, model, x: np.ndarray, targets: np.ndarray, layer: str) -> dict:
    """The JAX-backend calls the framework suites time, compiled: ``floor`` (one jitted
    ``jax.value_and_grad`` of the target scores ``apply(x)`` w.r.t. the input), ``saliency``
    and ``gradcam`` at ``layer`` through ``ak.explain(model, ...)``."""
    import jax

    @jax.jit
    def value_and_grad(x, targets):
        def picked(x):
            return jax.numpy.take_along_axis(apply(x), targets[:, None], 1).sum()

        return jax.value_and_grad(picked)(x)

    calls = {
        "floor": lambda: jax.block_until_ready(value_and_grad(x, targets)),
        "saliency": lambda: ak.explain(model, x, targets, method="saliency"),
        "gradcam": lambda: ak.explain(model, x, targets, method="gradcam", layer=layer),
    }
    for call in calls.values():  # compile
        call()
    return calls
