"""Text as a first-class input: token attributions for language models.

``ak.explain(model, texts, target, method=..., tokenizer=tok)`` on a Hugging Face
classifier (``*ForSequenceClassification``), a causal LM (``*ForCausalLM``) or any
``nn.Module`` mapping token ids to scores. Rooms:

- :mod:`~attribkit.text.detect`: whether ``explain``'s inputs are text (no torch);
- :mod:`~attribkit.text.inputs`: strings or ids + mask -> :class:`TextBatch` (right-padded);
- :mod:`~attribkit.text.model`: :class:`TextModel`, the model seen through its embedding layer;
- :mod:`~attribkit.text.targets`: :class:`Continuation` and :class:`TextPlan` (what is explained);
- :mod:`~attribkit.text.result`: :class:`TokenAttribution`;
- :mod:`~attribkit.text.runner`: ``explain_text`` (checks, guard, chunks, the result, once);
- the kernels, one module per family (``gradients``, ...).

The exports are lazy: importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Continuation": "attribkit.text.targets",
    "TokenAttribution": "attribkit.text.result",
    "TextBatch": "attribkit.text.inputs",
    "TextModel": "attribkit.text.model",
    "is_text_input": "attribkit.text.detect",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
