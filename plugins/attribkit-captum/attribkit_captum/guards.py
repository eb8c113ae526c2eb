"""Guards around a Captum call (torch only, no Captum import): module attributes,
random-number generators, Captum's informational warnings, Captum's assertions."""

from __future__ import annotations

import contextlib
import numbers
import random
import re
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from attribkit.errors import InputError, InvalidOptionError

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


def _raised_in_captum(exc: BaseException) -> bool:
    """Whether the innermost frame of ``exc``'s traceback is Captum's code."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return module == "captum" or module.startswith("captum.")


def captum_error(method: str, options: Iterable[str], exc: AssertionError
                 ) -> InvalidOptionError | InputError:
    """The attribkit error for an ``AssertionError`` Captum raised: ``InvalidOptionError``
    if Captum's message names one of ``options``, ``InputError`` otherwise; both name
    the method and quote Captum's message."""
    message = str(exc).strip() or "(no message)"
    named = [o for o in options if re.search(rf"\b{re.escape(o)}\b", message)]
    if named:
        return InvalidOptionError(
            f"{method}: Captum rejected option {', '.join(map(repr, named))}: {message}"
        )
    return InputError(f"{method}: Captum rejected the call: {message}")


@contextlib.contextmanager
def captum_assertions(method: str, options: Iterable[str]) -> Iterator[None]:
    """Turn an ``AssertionError`` raised inside Captum into :func:`captum_error`'s
    attribkit error (chained with ``from``); an assertion of the user's model
    (raised in its own code) propagates unchanged."""
    try:
        yield
    except AssertionError as exc:
        if not _raised_in_captum(exc):
            raise
        raise captum_error(method, options, exc) from exc
