"""Progress bars for calls that may take more than a few seconds.

Score-CAM, Ablation-CAM and the perturbation methods run many forwards (a ViT
layer with 768 channels costs Score-CAM ``768 * B`` of them). :func:`progress`
gives them a tqdm bar on stderr that appears only once the work has taken
:data:`DELAY_S` seconds, so quick calls print nothing. The environment
variable ``ATTRIBKIT_PROGRESS`` overrides it: ``0`` / ``off`` never shows a
bar, ``always`` shows it at once. Inside :func:`quiet` (e.g. a dataset run
that draws its own bar) a call shows none.
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


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No bar from :func:`progress` for calls made in this context (this thread only)."""
    token = _QUIET.set(True)
    try:
        yield
    finally:
        _QUIET.reset(token)


def progress(total: int, desc: str, *, unit: str = "forward") -> Any:
    """A ``tqdm`` bar over ``total`` steps (use as a context manager, call ``update(n)``)."""
    from tqdm.auto import tqdm

    setting = os.environ.get("ATTRIBKIT_PROGRESS", "").strip().lower()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, dynamic_ncols=True,
                delay=0.0 if setting == "always" else DELAY_S,
                disable=setting in ("0", "off", "false", "no") or _QUIET.get())
