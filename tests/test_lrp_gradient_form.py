"""The transformer composites in gradient form: LRP-epsilon on the linear layers (not
only LRP-0), the fused attention when only some of ``q``, ``k``, ``v`` depend on the
input, and ``baddbmm`` (BLOOM's ALiBi scores) as a sum and a uniform product.

References are written here as gradient changes (``input × gradient`` = relevance), as
in tests/test_lrp_transformers.py."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attribkit as ak
from attribkit.torch.lrp.transformer_rules import exact_of
from tests.test_lrp_transformers import (
    TINY,
    conservative_vit,
    reference,
    relative_difference,
    timm_vit,
    uniform_matmul,
)


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_epsilon_on_the_linear_layers_equals_the_reference(images, composite):
    """``R_in = x ⊙ Wᵀ(R / stab_ε(z))`` on every linear layer and the patch embedding with
    a large ε, so that it matters."""
    model = timm_vit()
    expected, _ = reference(model, images, 2, composite, epsilon=0.05)
    result = ak.explain(model, images, target=2, method="lrp", composite=composite, epsilon=0.05,
                        stabilizer=TINY).values
    assert relative_difference(result, expected) < 1e-8
    lrp0, _ = reference(model, images, 2, composite)
    assert relative_difference(lrp0, expected) > 1e-3  # ε changes the result here


class CrossAttention(nn.Module):
    """Fused attention of the tokens (queries, and values when ``live_values``) on a
    constant memory (keys, and values otherwise)."""

    def __init__(self, live_values, width=8, memory=5, classes=3):
        super().__init__()
        self.live_values = live_values
        self.q, self.v = nn.Linear(width, width), nn.Linear(width, width)
        self.register_buffer("memory", torch.randn(1, 1, memory, width))
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        q = self.q(x)[:, None]
        k = self.memory.expand(len(x), -1, -1, -1)
        v = self.v(x)[:, None] if self.live_values else k
        return self.head(F.scaled_dot_product_attention(q, k, v).mean(dim=(1, 2)))


@pytest.mark.parametrize("live_values", [False, True])
def test_fused_attention_on_constant_keys(live_values):
    """A constant key takes no share: the query gets all of ``q kᵀ``'s relevance, and
    ``A v`` is split only when ``v`` depends on the input too."""
    torch.manual_seed(0)
    model = CrossAttention(live_values).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    xx = x.clone().requires_grad_(True)
    q, k = model.q(xx)[:, None], model.memory.expand(2, -1, -1, -1)
    attention = (q @ k.transpose(-2, -1) / 8 ** 0.5).softmax(-1)
    o = uniform_matmul(attention, model.v(xx)[:, None]) if live_values else attention @ k
    (grad,) = torch.autograd.grad(model.head(o.mean(dim=(1, 2)))[:, 1].sum(), xx)
    result = ak.explain(model, x, target=1, method="lrp", composite="attnlrp", epsilon=TINY,
                        stabilizer=TINY).values
    assert relative_difference(result, x * grad) < 1e-9


class Scores(nn.Module):
    """Attention scores ``bias + q kᵀ`` written with ``baddbmm`` (BLOOM) or ``@`` and ``+``."""

    def __init__(self, fused_sum, width=6, tokens=4, classes=3):
        super().__init__()
        self.fused_sum = fused_sum
        self.q, self.k = nn.Linear(width, width), nn.Linear(width, width)
        self.register_buffer("bias", torch.randn(1, tokens, tokens))
        self.head = nn.Linear(tokens, classes)

    def forward(self, x):
        q, k = self.q(x), self.k(x).transpose(1, 2)
        scores = self.bias.baddbmm(batch1=q, batch2=k, beta=0.5, alpha=0.3) if self.fused_sum \
            else 0.5 * self.bias + 0.3 * (q @ k)
        return self.head(scores.softmax(-1).mean(dim=1))


def test_baddbmm_is_a_sum_and_a_uniform_product():
    torch.manual_seed(0)
    fused, plain = Scores(True).double(), Scores(False).double()
    plain.load_state_dict(fused.state_dict())
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    values = [ak.explain(m, x, target=2, method="lrp", composite="attnlrp", epsilon=TINY,
                         stabilizer=TINY).values for m in (fused, plain)]
    assert relative_difference(values[0], values[1]) < 1e-12
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(plain(xx)[:, 2].sum(), xx)
    assert relative_difference(values[1], x * grad) > 1e-2  # the uniform rule is not the gradient


def test_lrp_0_without_a_stabilizer_is_finite_at_exact_zeros():
    """``epsilon=0, stabilizer=0`` (LXT's LRP-0): no division by a linear layer's output in
    gradient form, and an activation without a closed form for ``y / x`` (tanh) whose
    input is exactly 0 sends nothing on."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Tanh(), nn.LayerNorm(6), nn.Linear(6, 3)).double()
    with torch.no_grad():
        model[0].weight[0, 2:] = 0.0
    x = torch.randn(3, 4, dtype=torch.float64)
    x[0, :2] = 0.0  # the first tanh input of the first row is exactly 0, the others are not
    exact = ak.explain(model, x, target=1, method="lrp", composite="attnlrp", epsilon=0.0, stabilizer=0.0)
    tiny = ak.explain(model, x, target=1, method="lrp", composite="attnlrp", epsilon=TINY, stabilizer=TINY)
    assert torch.isfinite(exact.values).all()
    assert relative_difference(exact.values, tiny.values) < 1e-9


def test_exact_identity_rules_are_the_activation_over_its_input():
    """The identity rule's ``G ⊙ y / x`` for GELU, SiLU and ReLU (functions, modules,
    transformers' modules), finite at ``x = 0`` (½, ½, 0); GELU's tanh approximation and
    tanh have none (they divide, stabilised)."""
    x = torch.cat([torch.linspace(-6, 6, 120, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    grad = torch.full_like(x, 3.0)
    activations = pytest.importorskip("transformers.activations")
    for fn, modules, at_zero in (
            (F.gelu, [nn.GELU(), activations.GELUActivation(), activations.GELUActivation(use_gelu_python=True)], 0.5),
            (F.silu, [nn.SiLU(), activations.SiLUActivation()], 0.5), (F.relu, [nn.ReLU()], 0.0)):
        y = fn(x)
        for exact in [exact_of(fn)] + [exact_of(m) for m in modules]:
            g = exact(grad, x, y)
            torch.testing.assert_close(g * x, 3 * y, rtol=1e-12, atol=1e-15)
            assert g[x == 0].item() == 3 * at_zero
    assert exact_of(nn.GELU(approximate="tanh")) is None and exact_of(F.gelu, "tanh") is None
    assert exact_of(nn.Tanh()) is None and exact_of(activations.NewGELUActivation()) is None


def test_a_callable_target_gets_its_own_score(images):
    """The backward starts from 1 at the score ``target(logits)``: on a bias-free ViT with
    CP-LRP the relevance sums to that score (``2 · logit``)."""
    model = conservative_vit()
    result = ak.explain(model, images, target=lambda logits: 2 * logits[:, 3], method="lrp",
                        composite="cp_lrp", epsilon=TINY, stabilizer=TINY)
    with torch.no_grad():
        score = 2 * model(images)[:, 3]
    torch.testing.assert_close(result.values.sum(dim=(1, 2, 3)), score, rtol=1e-9, atol=0)
