"""Progress bars for calls that may take more than a few seconds.

Score-CAM, Ablation-CAM, integrated gradients, the noise tunnel and the
perturbation methods run many forwards (a ViT layer with 768 channels costs
Score-CAM ``768 * B`` of them). :func:`progress` gives them a tqdm bar on stderr
that appears only once the work has taken :data:`DELAY_S` seconds, so quick calls
print nothing. The environment variable ``ATTRIBKIT_PROGRESS`` overrides it:
``0`` / ``off`` never shows a bar, ``always`` shows it at once. Inside
:func:`quiet` (e.g. a dataset run that draws its own bar) a call shows none.

Bars do not stack: a bar opened while another one of this thread is open (the
noise tunnel's, around the method it smooths) stays silent, the outer one
counts. Each bar says what is running: inside :func:`labelled` (the method's
name, set by the runners) its description is prefixed with the label, e.g.
``"occlusion: perturbed images"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import sys
from collections.abc import Iterator
from typing import Any

DELAY_S = 2.0
_QUIET = contextvars.ContextVar("attribkit_quiet_progress", default=False)
_OPEN = contextvars.ContextVar("attribkit_open_progress", default=False)
_LABEL = contextvars.ContextVar("attribkit_progress_label", default="")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No bar from :func:`progress` for calls made in this context (this thread only)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    """Bars opened in this context (this thread only) are described as ``"label: ..."``;
    the outermost label wins (a method called by another keeps the caller's name)."""
    token = _LABEL.set(_LABEL.get() or label)
    try:
        yield
    finally:
        _LABEL.reset(token)


def describe(desc: str) -> str:
    """``desc`` prefixed with the current :func:`labelled` label (once)."""
    label = _LABEL.get()
    if not label or desc == label or desc.startswith(f"{label}:"):
        return desc
    return f"{label}: {desc}"


@contextlib.contextmanager
def progress(total: int | None, desc: str, *, unit: str = "forward") -> Iterator[Any]:
    """A ``tqdm`` bar over ``total`` steps (``None``: unknown) for the body; call
    ``bar.update(n)``. Silent inside another open bar, :func:`quiet` or
    ``ATTRIBKIT_PROGRESS=0``."""
    from tqdm.auto import tqdm

    setting = os.environ.get("ATTRIBKIT_PROGRESS", "").strip().lower()
    silent = setting in ("0", "off", "false", "no") or _QUIET.get() or _OPEN.get()
    token = _OPEN.set(True)
    try:
        with tqdm(total=total, desc=describe(desc), unit=unit, file=sys.stderr, leave=False,
                  dynamic_ncols=True, delay=0.0 if setting == "always" else DELAY_S,
                  disable=silent) as bar:
            yield bar
    finally:
        _OPEN.reset(token)
