"""``digits``: real handwritten digits in clutter and the reference CNN.

scikit-learn's digits on cluttered canvases (:func:`attribkit.bench.digits.make_digits`),
the digit's box as evidence, the reference CNN trained on 4,000 canvases
(:func:`attribkit.bench.digits.digits_model`); the held-out canvases use digits
the model never saw.
"""

from __future__ import annotations

from attribkit.bench.digits import DigitsTrainConfig, digits_model, make_digits
from attribkit.bench.tasks.base import ReferenceTask, TaskData


def draw(config: DigitsTrainConfig, n: int) -> TaskData:
    """``n`` canvases of test-split digits drawn from ``config.seed + 20_000``."""
    return TaskData.from_arrays(make_digits(n, size=config.size, digit=config.digit, split="test",
                                            seed=config.seed + 20_000))


TASK = ReferenceTask(
    name="digits", description="handwritten digits (scikit-learn's) in clutter + the reference CNN",
    config=DigitsTrainConfig(), trained=digits_model, draw=draw, evidence="the digit's box")
