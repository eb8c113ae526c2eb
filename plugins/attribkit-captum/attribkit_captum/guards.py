"""Guards around a Captum call (torch only, no Captum import): module attributes,
random-number generators, Captum's informational warnings."""

from __future__ import annotations

import contextlib
import numbers
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from attribkit.errors import InvalidOptionError

# Captum's informational warnings about what it does on every call.
QUIET = (
    r"Input Tensor \d+ did not already require gradients",
    r"Setting forward, backward hooks and attributes on non-linear",
    r"You are providing multiple inputs for Lime",
    r"Setting backward hooks on ReLU activations",
)


@contextlib.contextmanager
def module_attributes_kept(model: Any) -> Iterator[None]:
    """Drop attributes added to any submodule, and put back removed ones, on exit.

    Captum keeps state on modules (LRP: ``rule``/``activations``, and it deletes a
    user's own ``rule``; DeepLift: saved inputs/outputs), normally cleaned up by
    Captum itself but not always when the model raises.
    """
    if not isinstance(model, nn.Module):
        yield
        return
    saved = [(m, dict(m.__dict__)) for m in model.modules()]
    try:
        yield
    finally:
        for module, before in saved:
            now = module.__dict__
            for key in [k for k in now if k not in before]:
                del now[key]
            for key, value in before.items():
                if key not in now:
                    now[key] = value


@contextlib.contextmanager
def seeded(seed: Any, device: torch.device) -> Iterator[None]:
    """Seed torch (CPU and the input's CUDA device), NumPy and ``random`` with ``seed``
    for the body, then restore every generator's previous state. ``None``: no-op."""
    if seed is None:
        yield
        return
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise InvalidOptionError(f"seed must be an integer or None, got {seed!r}")
    seed = int(seed)
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=cuda):
            torch.random.default_generator.manual_seed(seed)
            for index in cuda:
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence Captum's per-call informational warnings (others still show)."""
    with warnings.catch_warnings():
        for message in QUIET:
            warnings.filterwarnings("ignore", message=message)
        yield
