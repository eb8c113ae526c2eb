"""Built-in plugin: perturbation methods, which need only ``predict(batch) -> scores``."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="occlusion",
        aliases=("sliding_window_occlusion",),
        family="perturbation",
        factory="attribkit.perturbation.occlusion:occlusion",
        needs=("forward",),
        output="pixel",
        sign="signed",
        options={"window": None, "stride": None, "baseline": 0.0},
        reference="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks",
        description="score drop when a sliding window is set to a baseline; any predict callable",
    ))
