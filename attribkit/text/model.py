"""The model as the text methods see it: token ids in, raw output out, and its
embedding layer, whose output the gradient methods read and replace.

Every method perturbs or differentiates the **output of the embedding layer**
(the token embeddings, before position embeddings are added), as Captum's
``LayerIntegratedGradients`` on ``model.get_input_embeddings()`` does: the model
always receives token ids, and for the duration of one forward a call-scoped hook
(:func:`attribkit.torch.capture.forward_hook`) swaps that output for the given
embeddings. The model is never edited.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from attribkit.errors import InputError, LayerError
from attribkit.torch.capture import LayerCapture, StopForward, forward_hook


class TextModel:
    """``model`` with its token-embedding layer.

    Args:
        model: a Hugging Face model (``get_input_embeddings()``) or any ``nn.Module``
            mapping ``(B, T)`` token ids to scores.
        embedding: the embedding layer, a module or a dotted name; ``None``: the
            model's ``get_input_embeddings()``, else its only ``nn.Embedding`` (the one
            with the most rows when there are several: word embeddings, not positions).
    """

    def __init__(self, model: Any, embedding: nn.Module | str | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise InputError(f"text methods need a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.embedding, self.embedding_name = find_embedding(model, embedding)
        parameters = _forward_parameters(model)
        self.takes_mask = "attention_mask" in parameters
        self.takes_cache = "use_cache" in parameters

    @property
    def device(self) -> torch.device:
        """The device of the embedding weights."""
        weight = getattr(self.embedding, "weight", None)
        return weight.device if weight is not None else torch.device("cpu")

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor | None = None,
                 embeds: torch.Tensor | None = None, **extra: Any) -> Any:
        """The model's raw output on ``ids`` (``mask``: ``True`` on real tokens), with the
        embedding layer's output replaced by ``embeds`` (``(B, T, D)``) when given
        (``extra``: further keyword arguments of the model's forward)."""
        kwargs: dict[str, Any] = dict(extra)
        if self.takes_mask and mask is not None:
            kwargs["attention_mask"] = mask.long()
        if self.takes_cache:
            kwargs["use_cache"] = False
        if embeds is None:
            return self.model(ids, **kwargs)

        def replace(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor:
            if output.shape != embeds.shape:
                raise InputError(f"embeddings of shape {tuple(embeds.shape)} given for a layer "
                                 f"that outputs {tuple(output.shape)}")
            return embeds.to(output.dtype)

        with forward_hook(self.embedding, replace):
            return self.model(ids, **kwargs)

    def embed(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The embedding layer's output in the model's forward on ``ids``, ``(B, T, D)``
        (read by a call-scoped hook; the forward stops right after the layer)."""
        capture = LayerCapture(self.embedding, self.embedding_name, mode="copy", stop_after=1)
        with capture, torch.no_grad():
            try:
                self(ids, mask)
            except StopForward:
                pass
        output = capture.output
        if capture.calls == 0 or not isinstance(output, torch.Tensor):
            raise LayerError(f"the embedding layer {self.embedding_name} was not called with the token ids, "
                             "or returned no tensor; name the token embeddings: embedding=\"...\"")
        if tuple(output.shape[:2]) != tuple(ids.shape):
            raise LayerError(f"the embedding layer {self.embedding_name} returned {tuple(output.shape)} for "
                             f"token ids {tuple(ids.shape)}: a (B, T, ...) output is needed")
        return output


def find_embedding(model: nn.Module, embedding: nn.Module | str | None) -> tuple[nn.Module, str]:
    """The token-embedding layer and its dotted name (see :class:`TextModel`)."""
    names = {module: name for name, module in model.named_modules()}
    if isinstance(embedding, str):
        found = dict(model.named_modules()).get(embedding)
        if found is None:
            raise LayerError(f"the model has no module {embedding!r}; embeddings: "
                             + ", ".join(n for m, n in names.items() if isinstance(m, nn.Embedding)))
        return found, embedding
    if isinstance(embedding, nn.Module):
        if embedding not in names:
            raise LayerError("embedding= is a module that is not part of the model")
        return embedding, names[embedding]
    getter = getattr(model, "get_input_embeddings", None)
    if callable(getter):
        try:
            found = getter()
        except (NotImplementedError, AttributeError):
            found = None
        if isinstance(found, nn.Module) and found in names:
            return found, names[found]
    tables = [m for m in names if isinstance(m, nn.Embedding)]
    if not tables:
        raise LayerError(f"{type(model).__name__} has no nn.Embedding and no get_input_embeddings(); "
                         "name the layer whose output are the token embeddings: embedding=\"...\"")
    tables.sort(key=lambda m: -m.num_embeddings)
    if len(tables) > 1 and tables[0].num_embeddings == tables[1].num_embeddings:
        raise LayerError("several nn.Embedding layers of the same size ("
                         + ", ".join(names[m] for m in tables[:4]) + "): name the token embeddings: embedding=\"...\"")
    return tables[0], names[tables[0]]


def _forward_parameters(model: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()
