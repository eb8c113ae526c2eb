"""Built-in plugin: the random-attribution baseline every benchmark table includes."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec


@hookimpl
def register_methods(register):
    register(MethodSpec(
        name="random",
        aliases=("random_baseline",),
        family="other",
        factory="attribkit.perturbation.baseline:random_attribution",
        needs=("forward",),
        output="pixel",
        sign="non-negative",
        options={"seed": 0},
        text="attribkit.text.baseline:random_tokens",
        text_options={"seed": 0},
        reference="the chance reference of faithfulness benchmarks (e.g. Hooker et al. 2019, ROAR)",
        description="uniform random map: the score every method must beat",
    ))
