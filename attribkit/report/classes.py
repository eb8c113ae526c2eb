"""Labels and predictions in the store report: what each class index is called, and whether a
label and a prediction can be compared at all.

A label indexes the data's classes (an image folder's class folders); a
prediction or an explained class indexes the model's outputs. They name the
same classes only when the two lists are the same, when every label's name is
one of the model's class names (folder ``goldfish`` is ImageNet class 1), or,
with no names for the model's outputs, when every prediction is one of the
data's classes (a model trained on these folders, in torchvision
``ImageFolder``'s order). Otherwise (``astronaut/`` images explained with an
ImageNet model) nothing is marked wrong, and the page says why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ClassSpaces:
    """The names of labels and of model classes, and how a label maps to a model class.

    Attributes:
        label_names: the data's class names (``None``: labels are model class indices).
        model_names: the model's output names, or ``None`` when unknown.
        to_model: a label's model class, for every label seen, when labels and
            predictions name the same classes; ``None`` when they cannot be compared.
        note: one sentence for the page on how (or why not) they are compared; may be empty.
    """

    label_names: list[str] | None
    model_names: list[str] | None
    to_model: dict[int, int] | None
    note: str = ""

    def label(self, index: Any) -> str:
        """The name of label ``index`` (``""`` for a missing label, ``-1``)."""
        if index is None or int(index) < 0:
            return ""
        i = int(index)
        names = self.label_names if self.label_names is not None else self.model_names
        return _name(names, i)

    def model_class(self, index: Any) -> str:
        """The name of the model's class ``index`` (a prediction or an explained class)."""
        if index is None or int(index) < 0:
            return ""
        return _name(self.model_names, int(index))

    def wrong(self, label: Any, prediction: Any) -> bool:
        """Whether the prediction is another class than the label (``False`` when they cannot be compared)."""
        if self.to_model is None or label is None or prediction is None or int(label) < 0:
            return False
        return self.to_model.get(int(label), -1) != int(prediction)


def _name(names: Sequence[str] | None, i: int) -> str:
    return str(names[i]) if names is not None and 0 <= i < len(names) else f"class {i}"


def _listed(names: Sequence[str], most: int = 3) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def class_spaces(label_names: Sequence[str] | None, model_names: Sequence[str] | None,
                 labels: np.ndarray | None, predictions: np.ndarray | None) -> ClassSpaces:
    """How the report names and compares ``labels`` (indices into ``label_names``) and
    ``predictions`` (indices into the model's outputs, named ``model_names`` when known);
    see the module docstring for the rules."""
    label_names = [str(n) for n in label_names] if label_names is not None else None
    model_names = [str(n) for n in model_names] if model_names is not None else None
    if labels is None or predictions is None:
        return ClassSpaces(label_names, model_names or label_names, None)
    seen = sorted({int(v) for v in np.asarray(labels).ravel() if int(v) >= 0})
    predicted = [int(v) for v in np.asarray(predictions).ravel() if int(v) >= 0]
    if label_names is None or label_names == model_names:  # one list of classes for both
        return ClassSpaces(label_names, model_names or label_names, {i: i for i in seen})
    if model_names is not None:
        from attribkit.images import ClassIndex

        index = ClassIndex(model_names)
        found = {i: index.indices(label_names[i]) for i in seen if i < len(label_names)}
        missing = [label_names[i] for i in seen if len(found.get(i, [])) != 1]
        if missing:
            return ClassSpaces(label_names, model_names, None, (
                f"Labels are not compared with predictions: the data's class {_listed(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} not one of the model's {len(model_names)} class "
                "names, so a label and a prediction do not name the same classes."))
        return ClassSpaces(label_names, model_names, {i: found[i][0] for i in seen}, (
            f"Labels are compared with predictions by name: each of the data's classes is one of the "
            f"model's {len(model_names)} class names."))
    beyond = list(dict.fromkeys(p for p in predicted if p >= len(label_names)))  # in the rows' order
    if beyond:
        return ClassSpaces(label_names, None, None, (
            f"Labels are not compared with predictions: the model predicts class {beyond[0]}"
            f"{f' (and {len(beyond) - 1} more)' if len(beyond) > 1 else ''}, beyond the data's "
            f"{len(label_names)} classes ({_listed(label_names)}), so its outputs are not these classes. "
            "Give the model's class names (attribkit report --model-classes imagenet or FILE; "
            "model_classes= in Python) to compare them by name."))
    return ClassSpaces(label_names, label_names, {i: i for i in seen}, (
        "The model's class names are not known: prediction N is read as the data's N-th class "
        f"({_listed(label_names)}, in order), as for a model trained on these classes."))


def model_class_names(given: Sequence[str] | str | None, store: Any) -> list[str] | None:
    """The model's class names: ``given`` (a list, or ``"imagenet"``), else the list the run
    recorded in the store (``meta["model_classes"]``), else ``None``."""
    if isinstance(given, str):
        if given.lower() != "imagenet":
            raise ValueError(f"model_classes must be a list of names or 'imagenet', got {given!r}")
        from attribkit.images import imagenet_classes

        return list(imagenet_classes())
    if given is not None:
        return [str(n) for n in given]
    recorded = store.meta.get("model_classes")
    if isinstance(recorded, list) and recorded and all(isinstance(n, str) for n in recorded):
        return recorded
    return None
