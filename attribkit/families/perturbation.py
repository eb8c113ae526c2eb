"""Built-in plugin: perturbation methods, which need only ``predict(batch) -> scores``."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec

# RISE's masks (Petsiuk et al. 2018 use a 7 x 7 grid, p 0.5 and several thousand masks;
# 1000 here, so that a CPU run takes seconds, not minutes)
MASKS = {"n_masks": 1000, "grid": 7, "p_keep": 0.5, "seed": 0, "baseline": 0.0,
         "forward_batch_size": None}


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
        text="attribkit.text.occlusion:occlusion",
        text_options={"baseline": None, "span": 1, "stride": None, "skip_tokens": None,
                      "forward_batch_size": None},
        reference="Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks",
        description="score drop when a sliding window is set to a baseline; any predict callable",
    ))
    register(MethodSpec(
        name="rise",
        family="perturbation",
        factory="attribkit.perturbation.rise:rise",
        needs=("forward",),
        output="pixel",
        sign="signed",
        options={**MASKS, "probabilities": True},
        reference="Petsiuk, Das & Saenko 2018, RISE: Randomized Input Sampling for Explanation of "
                  "Black-box Models, BMVC, arXiv:1806.07421",
        description="random smooth masks weighted by the target's score; any predict callable",
    ))
    register(MethodSpec(
        name="drise",
        aliases=("d_rise",),
        family="perturbation",
        factory="attribkit.perturbation.drise:drise",
        needs=("forward", "box_target"),
        output="pixel",
        sign="non-negative",
        # a finer grid than RISE's: a box is smaller than the image
        options={**MASKS, "grid": 16},
        reference="Petsiuk et al. 2021, Black-box Explanation of Object Detectors via Saliency Maps, "
                  "CVPR, arXiv:2006.03204",
        description="RISE masks weighted by a detector's box similarity; one map per box (ak.Box)",
    ))
