"""LRP through vision transformers (AttnLRP, CP-LRP): equal to a reference written here
with explicit attention, conservation, batching, the model untouched, clear errors.

The reference re-implements a 2-block timm ViT by hand and applies the published rules
in the "gradient x input" form (as LXT does): every rule is a change of the forward's
gradient such that ``input * gradient`` is the relevance (LRP-0 on the linear layers,
sums and the normalisation with its standard deviation detached; GELU as
``x * (gelu(x) / x).detach()``, the identity rule; the products ``Q Kᵀ`` and ``A V``
as ``(a @ b.detach() + a.detach() @ b) / 2``, the uniform rule; the softmax with its
own gradient, which is the Taylor rule in this form; CP-LRP: ``A`` detached, ``A V``
with its gradient). The
engine instead passes relevance explicitly through autograd functions.
"""

import threading

import pytest
import timm
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import attribkit as ak
from attribkit.testing import assert_model_untouched
from attribkit.torch.lrp.composites import LRPRuleError

TINY = 1e-12  # epsilon and stabilizer: LRP-0 in float64


def randomised(model, seed=0, scale=0.5):
    """Every parameter random (timm and torchvision initialise biases, LayerNorm and the
    torchvision head to constants, which would hide mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale
            p.copy_(1 + noise * 0.5 if name.endswith("norm1.weight") or name.endswith("norm2.weight")
                    or name.endswith("norm.weight") else noise)
    return model


def timm_vit(bias=True, seed=0, **options):
    torch.manual_seed(seed)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4,
                              depth=2, embed_dim=16, num_heads=2, num_classes=5, qkv_bias=bias, **options)
    return randomised(model.eval().double(), seed)


def torchvision_vit(seed=0):
    torch.manual_seed(seed)
    model = torchvision.models.vision_transformer.VisionTransformer(
        image_size=16, patch_size=4, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=4)
    return randomised(model.eval().double(), seed)


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


# ------------------------------------------------------------------ the reference

def layer_norm(x, weight, bias, eps):
    """LayerNorm with its standard deviation detached (LRP-0 through the rest)."""
    mean = x.mean(-1, keepdim=True)
    std = ((x - mean) ** 2).mean(-1, keepdim=True).add(eps).sqrt().detach()
    out = (x - mean) / std * weight
    return out if bias is None else out + bias


def uniform_matmul(a, b):
    return (a @ b.detach() + a.detach() @ b) / 2


def epsilon_rule(z, epsilon):
    """``z``, its gradient times ``z / (z + epsilon·sign(z))``: LRP-epsilon's
    ``R_in = x ⊙ Wᵀ(R / stab(z))`` with ``R = z ⊙ gradient`` (LRP-0 for 0)."""
    if not epsilon:
        return z
    factor = z / (z + epsilon * torch.where(z >= 0, 1.0, -1.0).to(z))
    return z.detach() + (z - z.detach()) * factor.detach()


def reference(model, x, target, composite, parts=None, epsilon=0.0):
    """x * d(logit)/dx with the rules as gradient changes, on the timm model's weights.
    ``parts``: a dict that receives ``p * d(logit)/dp`` summed for the class token, the
    position embedding and all biases together (the relevance they take; one image).
    ``epsilon``: LRP-epsilon on the linear layers and the patch embedding."""

    def linear(*args):
        return epsilon_rule(F.linear(*args), epsilon)
    x = x.detach().requires_grad_(True)
    with torch.no_grad():
        params = {n: p.detach().clone().requires_grad_(parts is not None and n in absorbing(model))
                  for n, p in model.named_parameters()}
    proj = model.patch_embed.proj
    h = epsilon_rule(F.conv2d(x, params["patch_embed.proj.weight"], params["patch_embed.proj.bias"],
                              stride=proj.stride), epsilon)
    h = h.flatten(2).transpose(1, 2)
    h = torch.cat([params["cls_token"].expand(len(x), -1, -1), h], dim=1) + params["pos_embed"]
    for i, block in enumerate(model.blocks):
        p = {n.split(f"blocks.{i}.", 1)[1]: t for n, t in params.items() if n.startswith(f"blocks.{i}.")}
        heads = block.attn.num_heads
        u = layer_norm(h, p["norm1.weight"], p.get("norm1.bias"), block.norm1.eps)
        qkv = linear(u, p["attn.qkv.weight"], p.get("attn.qkv.bias"))
        b, n, c = u.shape
        q, k, v = qkv.reshape(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        logits = uniform_matmul(q, k.transpose(-2, -1)) * (c // heads) ** -0.5
        attention = logits.softmax(-1)
        if composite == "cp_lrp":  # constant attention: A V is linear in V
            o = attention.detach() @ v
        else:
            o = uniform_matmul(attention, v)
        o = o.transpose(1, 2).reshape(b, n, c)
        h = h + linear(o, p["attn.proj.weight"], p["attn.proj.bias"])
        u = layer_norm(h, p["norm2.weight"], p.get("norm2.bias"), block.norm2.eps)
        z = linear(u, p["mlp.fc1.weight"], p["mlp.fc1.bias"])
        z = z * (F.gelu(z) / z).detach()  # the identity rule
        h = h + linear(z, p["mlp.fc2.weight"], p["mlp.fc2.bias"])
    h = layer_norm(h, params["norm.weight"], params.get("norm.bias"), model.norm.eps)[:, 0]
    logit = linear(h, params["head.weight"], params["head.bias"])[:, target]
    if parts is None:
        (grad,) = torch.autograd.grad(logit.sum(), x)
        return x.detach() * grad, logit.detach()
    names = absorbing(model)
    grad, *grads = torch.autograd.grad(logit.sum(), [x] + [params[n] for n in names])
    assert len(x) == 1, "parameters are shared by the images: one image at a time"
    for name, g in zip(names, grads):
        kind = name if name in ("cls_token", "pos_embed") else "biases"
        parts[kind] = parts.get(kind, 0) + (g * params[name]).sum().item()
    return x.detach() * grad, logit.detach()


def absorbing(model):
    """The parameters that take relevance: class token, position embedding, biases."""
    return [n for n, _ in model.named_parameters() if n in ("cls_token", "pos_embed") or n.endswith("bias")]


def relative_difference(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ------------------------------------------------------------------ tests

@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
@pytest.mark.parametrize("fused", [True, False])
def test_timm_vit_equals_the_reference(images, composite, fused):
    """Fused (F.scaled_dot_product_attention) and explicit (q @ kᵀ, softmax) attention."""
    model = timm_vit()
    for block in model.blocks:
        block.attn.fused_attn = fused
    expected, logits = reference(model, images, 2, composite)
    with torch.no_grad():
        torch.testing.assert_close(model(images)[:, 2], logits)  # the reference is the model
    result = ak.explain(model, images, target=2, method="lrp", composite=composite,
                        epsilon=TINY, stabilizer=TINY)
    assert relative_difference(result.values, expected) < 1e-8
    assert expected.abs().max() > 1e-3


def test_attnlrp_differs_from_cp_lrp_and_gradient_times_input(images):
    """The rules matter: neither variant is the plain input x gradient."""
    model = timm_vit()
    attn = ak.explain(model, images, target=2, method="lrp", composite="attnlrp").values
    cp = ak.explain(model, images, target=2, method="lrp", composite="cp_lrp").values
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 2].sum(), x)
    for a, b in ((attn, cp), (attn, grad * images), (cp, grad * images)):
        assert relative_difference(a, b) > 1e-2


def test_lrp_defaults_to_attnlrp_on_a_transformer(images):
    model = timm_vit()
    default = ak.explain(model, images, target=2, method="lrp")
    attn = ak.explain(model, images, target=2, method="lrp", composite="attnlrp")
    torch.testing.assert_close(default.values, attn.values, rtol=0, atol=0)


def conservative_vit(**options):
    """No biases anywhere, a zero class token and position embedding: every rule of
    CP-LRP (and every rule of AttnLRP except the softmax's) conserves relevance."""
    model = timm_vit(bias=False, **options)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name in ("cls_token", "pos_embed"):
                p.zero_()
    return model


@pytest.mark.parametrize("options", [{}, {"init_values": 0.5, "global_pool": "avg"}])
def test_cp_lrp_conserves_relevance_on_a_bias_free_vit(images, options):
    """Also with timm's LayerScale (x * gamma) and average pooling over the tokens."""
    model = conservative_vit(**options)
    targets = torch.tensor([0, 3, 4])
    result = ak.explain(model, images, targets, method="lrp", composite="cp_lrp",
                        epsilon=TINY, stabilizer=TINY)
    with torch.no_grad():
        logits = model(images).gather(1, targets[:, None]).squeeze(1)
    torch.testing.assert_close(result.values.sum(dim=(1, 2, 3)), logits, rtol=1e-9, atol=0)


@pytest.mark.parametrize("make", [timm_vit, torchvision_vit])
@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_batched_equals_per_image_and_model_untouched(images, make, composite):
    model = make()
    with assert_model_untouched(model):
        batched = ak.explain(model, images, target=1, method="lrp", composite=composite).values
    singles = torch.cat([ak.explain(model, images[i:i + 1], target=1, method="lrp",
                                    composite=composite).values for i in range(len(images))])
    torch.testing.assert_close(batched, singles, rtol=1e-9, atol=1e-12)
    assert not [n for n, m in model.named_modules() if "forward" in m.__dict__]
    assert all(p.requires_grad for p in model.parameters())


def test_torchvision_vit_equals_timm_with_the_same_weights(images):
    """torchvision's nn.MultiheadAttention path against timm's SDPA path, same weights."""
    tv = torchvision_vit()
    tm = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=16, patch_size=4, depth=2,
                           embed_dim=16, num_heads=2, num_classes=4, mlp_ratio=2.0).eval().double()
    names = {"cls_token": "class_token", "pos_embed": "encoder.pos_embedding",
             "patch_embed.proj.weight": "conv_proj.weight", "patch_embed.proj.bias": "conv_proj.bias",
             "norm.weight": "encoder.ln.weight", "norm.bias": "encoder.ln.bias",
             "head.weight": "heads.head.weight", "head.bias": "heads.head.bias"}
    for i in range(2):
        layer = f"encoder.layers.encoder_layer_{i}."
        for ours, theirs in (("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.qkv", "self_attention.in_proj"),
                             ("attn.proj", "self_attention.out_proj"), ("mlp.fc1", "mlp.0"),
                             ("mlp.fc2", "mlp.3")):
            for kind in ("weight", "bias"):
                sep = "_" if theirs.endswith("in_proj") else "."
                names[f"blocks.{i}.{ours}.{kind}"] = f"{layer}{theirs}{sep}{kind}"
    source = dict(tv.named_parameters())
    with torch.no_grad():
        for name, p in tm.named_parameters():
            p.copy_(source[names[name]])
        for m in tm.modules():
            if isinstance(m, nn.LayerNorm):
                m.eps = 1e-6  # torchvision's
        torch.testing.assert_close(tm(images), tv(images))
    for composite in ("attnlrp", "cp_lrp"):
        a = ak.explain(tv, images, target=3, method="lrp", composite=composite).values
        b = ak.explain(tm, images, target=3, method="lrp", composite=composite).values
        assert relative_difference(a, b) < 1e-9


class GatedBlock(nn.Module):
    """A LLaMA-like MLP block: RMSNorm, SiLU-gated product, residual sum, mean over the
    tokens, a linear head."""

    def __init__(self, width=6, hidden=10, classes=3):
        super().__init__()
        self.norm = nn.RMSNorm(width, eps=1e-6)
        self.gate, self.up = nn.Linear(width, hidden), nn.Linear(width, hidden, bias=False)
        self.down, self.head = nn.Linear(hidden, width, bias=False), nn.Linear(width, classes)

    def forward(self, x):
        u = self.norm(x)
        x = x + self.down(F.silu(self.gate(u)) * self.up(u))
        return self.head(x.mean(dim=1))


def gated_reference(model, x, target, composite="attnlrp"):
    """x * gradient with RMS detached, SiLU as the identity rule, the gated product
    uniform (AttnLRP) or with the activated gate detached (CP-LRP, as LXT)."""
    x = x.detach().requires_grad_(True)
    norm = model.norm
    u = x / x.pow(2).mean(-1, keepdim=True).add(norm.eps).sqrt().detach() * norm.weight.detach()
    g = F.linear(u, model.gate.weight.detach(), model.gate.bias.detach())
    a, b = g * (F.silu(g) / g).detach(), F.linear(u, model.up.weight.detach())
    gated = a.detach() * b if composite == "cp_lrp" else (a * b.detach() + a.detach() * b) / 2
    h = x + F.linear(gated, model.down.weight.detach())
    logit = F.linear(h.mean(dim=1), model.head.weight.detach(), model.head.bias.detach())[:, target]
    (grad,) = torch.autograd.grad(logit.sum(), x)
    return x.detach() * grad


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_rms_norm_and_a_gated_product_equal_the_reference(composite):
    torch.manual_seed(0)
    model = randomised(GatedBlock().double())
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    expected = gated_reference(model, x, 1, composite)
    result = ak.explain(model, x, target=1, method="lrp", composite=composite, epsilon=TINY,
                        stabilizer=TINY)
    assert relative_difference(result.values, expected) < 1e-8
    other = gated_reference(model, x, 1, "cp_lrp" if composite == "attnlrp" else "attnlrp")
    assert relative_difference(other, expected) > 1e-2  # the two conventions differ here


class Rotated(nn.Module):
    """A rotary-embedding-like step: ``x * cos + cat(-x2, x1) * sin`` (negation,
    products with constants, a sum)."""

    def __init__(self, width=4):
        super().__init__()
        self.cos, self.sin = torch.linspace(0.2, 1.0, width), torch.linspace(1.0, -0.5, width)
        self.head = nn.Linear(width, 2, bias=False)

    def forward(self, x):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return self.head((x * self.cos.to(x) + rotated * self.sin.to(x)).mean(dim=1))


def test_negation_passes_relevance_on():
    """The gradient would flip the sign of the relevance through ``-x``; LRP keeps it
    (reference: input x gradient, which is LRP-0 for this linear model), and it is
    conserved (no biases)."""
    torch.manual_seed(0)
    model = Rotated().double()
    x = torch.randn(2, 3, 4, dtype=torch.float64)
    result = ak.explain(model, x, target=1, method="lrp", composite="attnlrp", epsilon=TINY,
                        stabilizer=TINY)
    xx = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xx)[:, 1].sum(), xx)
    assert relative_difference(result.values, grad * x) < 1e-8


class FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(2, 3, 3, 3))
        self.act = nn.GELU()

    def forward(self, x):
        return self.act(F.conv2d(x, self.weight)).mean(dim=(2, 3))


class Squash(nn.Module):
    def forward(self, x):
        return x.exp()


class ExpBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x):
        return torch.exp(self.attn(x, x, x, need_weights=False)[0]).mean(dim=1)


def test_a_module_without_a_rule_is_named(images):
    model = timm_vit()
    model.blocks[1].mlp.act = Squash()
    with assert_model_untouched(model), pytest.raises(LRPRuleError, match=r"'blocks.1.mlp.act' of type Squash"):
        ak.explain(model, images, method="lrp")


def test_an_operation_without_a_rule_is_named():
    model = ExpBlock().double().eval()
    with assert_model_untouched(model), pytest.raises(LRPRuleError, match=r"torch\.exp"):
        ak.explain(model, torch.randn(2, 3, 4, dtype=torch.float64), target=0, method="lrp")
    conv = FunctionalConv()
    with assert_model_untouched(conv), pytest.raises(LRPRuleError, match="conv2d"):
        ak.explain(conv, torch.randn(1, 3, 8, 8), target=0, method="lrp", composite="cp_lrp")


def test_cnn_composites_still_refuse_a_layer_norm(images):
    model = timm_vit()
    with assert_model_untouched(model), pytest.raises(LRPRuleError, match="'blocks.0.norm1' of type LayerNorm"):
        ak.explain(model, images, method="lrp", composite="epsilon_gamma_box")


def test_calls_from_four_threads_equal_the_serial_result(images):
    model = timm_vit()
    serial = ak.explain(model, images, target=1, method="lrp").values
    results, errors = [], []
    barrier = threading.Barrier(4)

    def work():
        barrier.wait()
        try:
            for _ in range(2):
                results.append(ak.explain(model, images, target=1, method="lrp").values)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    with assert_model_untouched(model):
        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and len(results) == 8
    assert all(torch.equal(r, serial) for r in results)


def test_where_the_rest_of_the_relevance_goes(images):
    """CP-LRP on a ViT with biases: input + class token + position embedding + biases =
    the logit (the input's share from the engine, the others from the reference)."""
    model = timm_vit()
    for i in range(len(images)):
        parts = {}
        _, logit = reference(model, images[i:i + 1], 2, "cp_lrp", parts)
        result = ak.explain(model, images[i:i + 1], target=2, method="lrp", composite="cp_lrp",
                            epsilon=TINY, stabilizer=TINY)
        total = result.values.sum().item() + parts["cls_token"] + parts["pos_embed"] + parts["biases"]
        assert abs(total - logit.item()) < 1e-8 * abs(logit.item())
        assert abs(result.values.sum().item() - logit.item()) > 0.1 * abs(logit.item())  # not vacuous


def test_hugging_face_vit_sdpa_equals_eager_and_conserves_without_biases(images):
    """transformers' ViT: its own GELU module, SDPA or eager attention (matmul, softmax
    in float32); bias-free with a zero class token and position embedding, CP-LRP
    conserves."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(image_size=16, patch_size=4, num_hidden_layers=2, num_attention_heads=2,
                                    hidden_size=16, intermediate_size=32, num_labels=3)
    values = {}
    for attention in ("sdpa", "eager"):
        config._attn_implementation = attention
        torch.manual_seed(0)
        model = randomised(transformers.ViTForImageClassification(config).eval().double())
        with assert_model_untouched(model):
            values[attention] = ak.explain(model, images, target=1, method="lrp").values
    assert relative_difference(values["sdpa"], values["eager"]) < 1e-6
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name.endswith("cls_token") or name.endswith("position_embeddings"):
                p.zero_()
        logits = model(images).logits[:, 1]
    result = ak.explain(model, images, target=1, method="lrp", composite="cp_lrp", epsilon=TINY,
                        stabilizer=TINY)
    torch.testing.assert_close(result.values.sum(dim=(1, 2, 3)), logits, rtol=1e-6, atol=0)
