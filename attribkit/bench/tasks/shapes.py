"""``shapes``: synthetic scenes and the reference CNN.

Each 64x64 scene (:func:`attribkit.bench.synthetic.make_dataset`) holds one
class pattern among distractors, and its box is the evidence;
:class:`~attribkit.bench.reference.ReferenceCNN` is trained on 4,000 scenes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attribkit.bench.reference import TrainConfig, reference_model
from attribkit.bench.synthetic import make_dataset
from attribkit.bench.tasks.base import ReferenceTask, TaskData

if TYPE_CHECKING:
    from attribkit.bench.vit_reference import ViTTrainConfig


def draw(config: TrainConfig | ViTTrainConfig, n: int) -> TaskData:
    """``n`` scenes of ``config``'s size and classes drawn from ``config.seed + 20_000``."""
    return TaskData.from_arrays(make_dataset(n, size=config.size, classes=config.classes,
                                             seed=config.seed + 20_000))


TASK = ReferenceTask(
    name="shapes", description="synthetic scenes (a class pattern among distractors) + the reference CNN",
    config=TrainConfig(), trained=reference_model, draw=draw, evidence="the pattern's box")
