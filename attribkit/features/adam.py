"""Adam (Kingma & Ba 2015) for the one image tensor being optimised.

The update, element-wise, with ``g`` the gradient of the loss at step ``t``::

    m = b1 * m + (1 - b1) * g            v = b2 * v + (1 - b2) * g ** 2
    p = p - lr * (m / (1 - b1 ** t)) / (sqrt(v / (1 - b2 ** t)) + eps)

the same rule as ``torch.optim.Adam`` without weight decay. It is written out
here because constructing a ``torch.optim`` optimiser imports ``torch._dynamo``
(seconds on a small machine), far longer than a small visualisation takes.
Being element-wise, each row of a batch is updated exactly as if it were
optimised alone.
"""

from __future__ import annotations

import torch


class Adam:
    """Adam on one leaf tensor; :meth:`step` takes the loss gradient."""

    def __init__(self, param: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.param, self.lr, self.betas, self.eps = param, lr, betas, eps
        self.m = torch.zeros_like(param)
        self.v = torch.zeros_like(param)
        self.t = 0

    @torch.no_grad()
    def step(self, grad: torch.Tensor) -> None:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (self.v / (1 - b2 ** self.t)).sqrt_().add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / (1 - b1 ** self.t))
