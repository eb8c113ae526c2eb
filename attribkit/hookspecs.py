"""Pluggy hook specifications of the ``attribkit`` project.

A plugin is any module or object with functions decorated by
:data:`attribkit.hookimpl`; installed distributions expose it through the
``attribkit`` entry-point group. New arguments may be added to a hook over
time; pluggy passes each implementation only the arguments it names, so
existing plugins keep working.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("attribkit")
hookimpl = pluggy.HookimplMarker("attribkit")


@hookspec
def register_methods(register):
    """Register attribution methods.

    Call ``register(spec)`` once per :class:`attribkit.registry.MethodSpec`.
    The host fills in ``spec.plugin`` with the registering plugin's name.
    Import heavy dependencies (torch, Captum, ...) inside the spec's factory,
    not at module level, so that ``import attribkit`` stays fast.
    """


@hookspec
def register_metrics(register):
    """Register faithfulness / localisation / sanity / robustness metrics.

    Call ``register(spec)`` once per :class:`attribkit.registry.MetricSpec`;
    the benchmark runner offers every registered metric.
    """


@hookspec
def register_backends(register):
    """Register frameworks whose models attribkit's methods run on (JAX/Flax, Keras 3, ...).

    Call ``register(spec)`` once per :class:`attribkit.backends.BackendSpec`: which
    models the backend claims and how it wraps one as a
    :class:`attribkit.backends.FrameworkModel` (``docs/frameworks.md``). Import the
    framework inside the spec's factory, never at module level.
    """
