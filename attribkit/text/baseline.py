"""The ``random`` baseline on text: uniform random token values, the score every text
method must beat in the benchmark (seeded; one value per token and output token)."""

from __future__ import annotations

import torch

from attribkit.text.model import TextModel
from attribkit.text.runner import text_kernel
from attribkit.text.targets import TextPlan


@text_kernel(autograd=False)
def random_tokens(model: TextModel, plan: TextPlan, seed: int = 0) -> torch.Tensor:
    """Uniform ``[0, 1)`` values ``(b, width, L)`` from a generator seeded with ``seed`` and
    the row's token ids (so a text gets the same values in any batch or chunk)."""
    values = torch.zeros((len(plan), plan.width, plan.ids.shape[1]))
    for i, (ids, real) in enumerate(zip(plan.ids.cpu(), plan.mask.cpu())):
        tokens = ids[real]
        generator = torch.Generator().manual_seed(seed * 1_000_003 + int(tokens.sum()) * 7919 + len(tokens))
        values[i, :, :len(tokens)] = torch.rand((plan.width, len(tokens)), generator=generator)
    return values.to(plan.ids.device)
