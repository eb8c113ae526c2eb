"""The one way to look inside a forward: hooks that belong to one call.

A forward hook registered on a module fires for *every* forward of that
module, whichever thread runs it. Two ``explain`` calls on one shared model,
from two threads, would each see the other's layer outputs. So every hook
attribkit registers goes through :func:`forward_hook`: the hook acts only for
forwards run by the thread that registered it (forwards always run on the
caller's thread; only the backward may move to autograd's device threads,
and attribkit registers no backward hooks), and it is removed when the
``with`` block ends, also on errors.

:class:`LayerCapture` records a layer's output with it, in one of three modes:

- ``"copy"``: a detached copy (CAM, Score-CAM, Eigen-CAM, feature maps);
- ``"leaf"``: the output becomes a fresh leaf ``A = output.detach().requires_grad_()``
  and autograd is switched on for the rest of the forward (``torch.set_grad_enabled``
  is thread-local, and the caller's ``no_grad`` block restores it), so
  ``torch.autograd.grad(score, A)`` differentiates only the part of the model
  after the layer (the Grad-CAM family);
- ``"graph"``: the output itself, still attached to the graph below it
  (``CAMLoss``, activation maximisation).

In ``"leaf"`` and ``"graph"`` modes the rest of the model gets a clone, so that
in-place operations after the layer (``out += identity``, ``ReLU(inplace=True)``)
cannot alter what was recorded. A layer called more than once per forward is
recorded at its **last** call (the rule the automatic layer choice uses);
``stop_after=n`` abandons the forward right after the ``n``-th call, so the
layers above are never computed; ``replace`` substitutes the output of a chosen
call (Ablation-CAM).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from attribkit.errors import LayerError

MODES = ("copy", "leaf", "graph")


@contextlib.contextmanager
def forward_hook(module: nn.Module, hook: Callable[..., Any], *, pre: bool = False,
                 prepend: bool = False) -> Iterator[None]:
    """Register ``hook`` as a forward hook (``pre=True``: forward pre-hook) of
    ``module`` for the body; it runs only for forwards on the calling thread.

    The hook has PyTorch's signature (``hook(module, args, output)``, or
    ``hook(module, args)`` for a pre-hook) and may return a replacement, as
    PyTorch allows. It is removed in ``finally``.
    """
    owner = threading.get_ident()

    def own_thread_only(*args: Any) -> Any:
        if threading.get_ident() != owner:
            return None
        return hook(*args)

    if pre:
        handle = module.register_forward_pre_hook(own_thread_only, prepend=prepend)
    else:
        handle = module.register_forward_hook(own_thread_only, prepend=prepend)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def forward_hooks(hooks: list[tuple[nn.Module, Callable[..., Any]]], *,
                  pre: bool = False, prepend: bool = False) -> Iterator[None]:
    """:func:`forward_hook` for several ``(module, hook)`` pairs at once."""
    with contextlib.ExitStack() as stack:
        for module, hook in hooks:
            stack.enter_context(forward_hook(module, hook, pre=pre, prepend=prepend))
        yield


class StopForward(Exception):
    """Raised by a :class:`LayerCapture` with ``stop_after`` to abandon the forward."""


def describe_output(output: Any) -> str:
    """``(2, 64, 7, 7)`` for a tensor, else the type's name (for error messages)."""
    return str(tuple(output.shape)) if isinstance(output, torch.Tensor) else type(output).__name__


def tensor_output(name: str) -> Callable[[Any], None]:
    """A :class:`LayerCapture` check: the layer returns one tensor."""
    def check(output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            raise LayerError(f"layer {name!r} returns {describe_output(output)}, not a tensor; "
                             "pick a layer whose output is one tensor")
    return check


class LayerCapture:
    """Records the output of ``layer`` in the forwards run inside ``with capture:``.

    Args:
        layer: the module whose output is recorded.
        name: its dotted name, for error messages.
        mode: ``"copy"``, ``"leaf"`` or ``"graph"`` (see the module docstring).
        stop_after: abandon the forward right after this many calls of the
            layer (:meth:`run` returns ``None`` for the model output then).
        check: ``check(output)`` raises a :class:`LayerError` for an output the
            caller cannot use (it runs before anything is recorded).
        replace: ``replace(output, call) -> tensor or None``: a tensor replaces
            the layer's output at call number ``call`` (1-based); ``None`` keeps it.

    Attributes:
        calls: how often the layer ran since the last :meth:`reset`.
        output: what was recorded at the last call (see ``mode``).
    """

    def __init__(self, layer: nn.Module, name: str = "", *, mode: str = "copy",
                 stop_after: int | None = None, check: Callable[[Any], None] | None = None,
                 replace: Callable[[Any, int], torch.Tensor | None] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.layer = layer
        self.name = name or type(layer).__name__
        self.mode = mode
        self.stop_after = stop_after
        self.check = check
        self.replace = replace
        self.calls = 0
        self.output: Any = None
        self._stack: contextlib.ExitStack | None = None

    def reset(self) -> None:
        """Forget what was recorded (before the next forward)."""
        self.calls, self.output = 0, None

    def _hook(self, _module: nn.Module, _args: Any, output: Any) -> Any:
        if self.check is not None:
            self.check(output)
        self.calls += 1
        if self.replace is not None:
            substitute = self.replace(output, self.calls)
            if substitute is not None:
                return substitute
        stopping = self.stop_after is not None and self.calls >= self.stop_after
        if self.mode == "copy":
            if isinstance(output, torch.Tensor):  # nothing runs after a stop: no copy needed
                output = output.detach() if stopping else output.detach().clone()
            self.output = output
        elif self.mode == "leaf":
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"layer {self.name} returned {describe_output(output)}, not a tensor")
            torch.set_grad_enabled(True)  # the caller's no_grad() block restores the mode on exit
            self.output = output.detach().requires_grad_(True)
        else:
            self.output = output
        if stopping:
            raise StopForward
        if self.mode == "leaf":
            return self.output.clone()
        if self.mode == "graph" and isinstance(output, torch.Tensor) and output.requires_grad:
            return output.clone()
        return None

    def __enter__(self) -> "LayerCapture":
        self.reset()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(forward_hook(self.layer, self._hook))
        return self

    def __exit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()

    def run(self, model: nn.Module, inputs: Any) -> Any:
        """One forward of ``model`` inside the capture: the model's output
        (``None`` when ``stop_after`` ended it early). ``LayerError`` if the
        layer was not called."""
        self.reset()
        scores = None
        try:
            scores = model(inputs)
        except StopForward:
            pass
        if self.calls == 0:
            raise LayerError(
                f"layer {self.name} was not called by the forward of {type(model).__name__}; "
                "pick a layer the forward pass goes through"
            )
        return scores
