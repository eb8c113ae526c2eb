"""A private copy of the model for Captum's DeepLift family: one nonlinearity per call.

Captum's DeepLift (and DeepLiftShap, LayerDeepLift, LayerDeepLiftShap) keeps a
nonlinearity's input and output on the module object and overrides its
gradient in a backward hook, so a module called twice per forward breaks it:
torchvision's ResNet blocks call one ``ReLU(inplace=True)`` module twice, and
Captum raises "A Module ReLU(inplace=True) was detected that does not contain
some of the input/output attributes ...".

The adapter therefore never hands Captum the user's model. :func:`private_copy`
makes a copy that **shares** the parameters and buffers (no second set of
weights; only the module objects are new) with every in-place nonlinearity
made non-inplace. :func:`split_reused` then uses the call counts of one probe
forward (:func:`call_counts`) to replace each nonlinearity called ``n > 1``
times by a :class:`CallSites` module holding ``n`` copies of it, the ``i``-th
call of every forward going to the ``i``-th copy. The copy is then exactly a
model with one non-inplace nonlinearity per use, and the user's model is never
modified, so concurrent calls on it are unaffected.

Dispatching by call order is only right if every forward makes the same calls
in the same order (a static graph, as in every torchvision classifier): each
:class:`CallSites` counts its calls per root forward and raises
:class:`~attribkit.errors.InputError` when a forward calls it more or fewer
times than the probe did.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
from collections.abc import Iterator
from typing import Any

from torch import nn

from attribkit.errors import InputError, LayerError
from attribkit.torch.capture import forward_hooks

#: The Captum classes that need a private copy of the model.
DEEPLIFT_FAMILY = frozenset({"DeepLift", "DeepLiftShap", "LayerDeepLift", "LayerDeepLiftShap"})


@functools.cache
def hooked_types() -> tuple[type[nn.Module], ...]:
    """The module types Captum's DeepLift hooks (exact types, as Captum compares them)."""
    from captum.attr._core.deep_lift import SUPPORTED_NON_LINEAR

    return tuple(SUPPORTED_NON_LINEAR)


def _hooked(module: nn.Module) -> bool:
    return type(module) in hooked_types()


class CallSites(nn.Module):
    """Stands in for one nonlinearity module that a forward calls ``len(sites)`` times.

    Call ``i`` of each root forward goes to ``sites[i]``, a copy of the module,
    so Captum sees every copy called once. ``name`` is the module's dotted name
    in the user's model, for error messages; :meth:`reset` and :meth:`check`
    run before and after every forward of the root (hooks set by :func:`split_reused`).
    """

    def __init__(self, module: nn.Module, calls: int, name: str) -> None:
        super().__init__()
        self.sites = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.name = name
        self.calls = 0

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.calls >= len(self.sites):
            raise self._changed(self.calls + 1, "or more ")
        site = self.sites[self.calls]
        self.calls += 1
        return site(*args, **kwargs)

    def reset(self) -> None:
        """Forget the calls of the previous forward."""
        self.calls = 0

    def check(self) -> None:
        """Raise if the forward that just finished called the module too few times."""
        if self.calls != len(self.sites):
            raise self._changed(self.calls, "")

    def _changed(self, calls: int, more: str) -> InputError:
        probe = len(self.sites)
        return InputError(
            f"{self.name!r} ({type(self.sites[0]).__name__}) was called {calls} {more}time(s) in "
            f"a forward but {probe} times in the probe forward; Captum's DeepLift needs one "
            "module per call, which attribkit makes by call order, so every forward must "
            "make the same calls (a static graph). Give each call its own module in the model"
        )


def private_copy(model: nn.Module, method: str) -> nn.Module:
    """A copy of ``model`` sharing its parameters and buffers, in eval mode, with
    every in-place nonlinearity that Captum hooks made non-inplace.

    The user's model is only read (``copy.deepcopy``); ``InputError`` if it cannot
    be copied.
    """
    shared = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    try:
        twin = copy.deepcopy(model, shared)
    except Exception as exc:  # deepcopy fails in many ways (locks, non-leaf tensors, ...)
        raise InputError(
            f"{method} explains a private copy of the model (Captum's DeepLift cannot handle "
            f"a nonlinearity module called twice, so attribkit gives each call its own), but "
            f"copy.deepcopy of {type(model).__name__} failed: {exc}"
        ) from exc
    twin.eval()
    for module in twin.modules():
        if _hooked(module) and getattr(module, "inplace", False):
            module.inplace = False
    return twin


def counterpart(model: nn.Module, twin: nn.Module, layer: Any) -> Any:
    """``layer`` as the user gave it, with a module of ``model`` replaced by the same
    module of ``twin`` (found by its dotted name); names and ``None`` pass through."""
    if not isinstance(layer, nn.Module):
        return layer
    for name, module in model.named_modules():
        if module is layer:
            return twin.get_submodule(name)
    return layer  # not in the model: the layer resolution reports it


@contextlib.contextmanager
def call_counts(model: nn.Module) -> Iterator[dict[nn.Module, int]]:
    """Count the calls of every module Captum's DeepLift hooks during the body."""
    counts: dict[nn.Module, int] = {}

    def count(module: nn.Module, _args: Any, _output: Any) -> None:
        counts[module] = counts.get(module, 0) + 1

    with forward_hooks([(m, count) for m in model.modules() if _hooked(m)]):
        yield counts


def split_reused(model: nn.Module, counts: dict[nn.Module, int], layer: nn.Module | None,
                 method: str) -> None:
    """Replace, inside the private copy ``model``, each module called more than once
    (``counts``: the calls of one forward) by a :class:`CallSites`; ``LayerError``
    if it is the explained ``layer`` (whose output would not be one tensor)."""
    names = {module: name for name, module in model.named_modules()}
    reused = {m: CallSites(m, n, names[m]) for m, n in counts.items() if n > 1}
    if not reused:
        return
    if layer in reused:
        raise LayerError(
            f"{method}: layer {names[layer]!r} ({type(layer).__name__}) is called "
            f"{counts[layer]} times per forward, so it has no single output to attribute to; "
            "choose the block around it or a layer called once"
        )
    for parent in list(model.modules()):
        for key, child in list(parent._modules.items()):  # every name, shared ones too
            if child in reused:
                setattr(parent, key, reused[child])
    sites = list(reused.values())

    def reset(_module: nn.Module, _args: Any) -> None:
        for site in sites:
            site.reset()

    def check(_module: nn.Module, _args: Any, _output: Any) -> None:
        for site in sites:
            site.check()

    model.register_forward_pre_hook(reset)
    model.register_forward_hook(check)
