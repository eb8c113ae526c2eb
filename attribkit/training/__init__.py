"""Attribution-guided losses: penalise a model for looking at the wrong place.

Two ``nn.Module`` losses that are added to the task loss of an ordinary
training loop. Both run the model's forward themselves (once) and return the
logits with the penalty, so the task loss reuses the same forward::

    cam_loss = CAMLoss(model, layer="features", weight=1.0)        # or RRRLoss(model, weight=...)
    for x, y, allowed in loader:
        out = cam_loss(x, y, allowed=allowed)   # one forward: logits + differentiable penalty
        loss = F.cross_entropy(out.logits, y) + out.penalty
        opt.zero_grad(); loss.backward(); opt.step()

Where the forward happens elsewhere (a training function that calls
``model(x)`` itself), :meth:`CAMLoss.watch` / :meth:`RRRLoss.watch` record the
forwards run inside a ``with`` block and :meth:`~CAMLoss.penalty` turns the
last one into the penalty. Every hook is removed when the call or the block
ends, also when the model raises; the losses never write ``.grad``, change
train/eval modes or ``requires_grad`` (gradients of the explanation come from
``torch.autograd.grad(..., create_graph=True)``; the *penalty's* gradient
reaches the parameters when the caller runs ``loss.backward()``).

:class:`CAMLoss`
    The "interpretability as a feedback loop" idea: a differentiable Grad-CAM
    (Selvaraju et al. 2017, arXiv:1610.02391) or CAM (Zhou et al. 2016,
    arXiv:1512.04150) of the **true** class, normalised to unit mass per image,
    penalised where a kernel says it should not be: the distance from the image
    centre, or the outside of an allowed mask.
:class:`RRRLoss`
    "Right for the Right Reasons" (Ross, Hughes & Doshi-Velez 2017,
    arXiv:1703.03717, IJCAI): the squared input gradient of the summed
    log-probabilities inside an annotated irrelevant region.

See ``docs/training.md``. Needs torch (``import attribkit`` does not import this).
"""

from attribkit.training.base import LossOutput, centre_kernel
from attribkit.training.cam_loss import CAMLoss
from attribkit.training.rrr import RRRLoss

__all__ = ["CAMLoss", "RRRLoss", "LossOutput", "centre_kernel"]
