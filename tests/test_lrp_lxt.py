"""attribkit's AttnLRP / CP-LRP against LXT (the ``lxt`` package 2.1, AttnLRP's reference
implementation, run in a subprocess by :mod:`tests.lxt_reference` because it patches classes
globally), on tiny randomly initialised models in float64.

First the harness itself is checked against facts that do not come from LXT: its patched
forward is the model's; CP-LRP conserves the target logit exactly on a ViT whose biases,
class token and position embeddings are zero (every rule is then linear and homogeneous);
and its relevance equals the published rules written out here on an explicit re-implementation
of torchvision's ViT. Then attribkit's ``method="lrp", composite="attnlrp"|"cp_lrp"`` is
compared with LXT (skipped while that composite is unknown). The language-model cases need
``.venv-lxt`` (``make lxt-venv``: LXT's LLaMA / GPT-2 patches need ``transformers<5``) and
are skipped without it.
"""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

import attribkit as ak
from attribkit.errors import InvalidOptionError
from tests.lxt_reference import LXTUnavailable, lxt_llm_run, lxt_run

VIT = dict(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
           num_classes=5)
VARIANTS = ("attnlrp", "cp_lrp")
TARGETS = torch.tensor([1, 3])


def randomised(model, seed):
    """Every parameter random (torchvision initialises biases, LayerNorms, the class token and
    the head to constants, which would hide mistakes); LayerNorm scales around 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5
            p.copy_(1 + noise * 0.5 if ".ln" in name and name.endswith("weight") else noise)
    return model


def vit(seed=0, bias_free=False):
    model = randomised(VisionTransformer(**VIT).double().eval(), seed)
    if bias_free:  # conservative by construction under CP-LRP
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("bias") or name in ("class_token", "encoder.pos_embedding"):
                    p.zero_()
    return model


def image(seed=1, n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def job(model, x, variant):
    return dict(model_kind="torchvision_vit", config=VIT, state_dict=model.state_dict(), x=x,
                target=TARGETS, variant=variant)


@pytest.fixture(scope="module")
def lxt():
    """LXT's results, all in one subprocess: both variants on the random ViT, CP-LRP and
    AttnLRP on the bias-free one."""
    models, x = {"model": vit(), "free": vit(bias_free=True)}, image()
    keys = [(name, variant) for name in models for variant in VARIANTS]
    try:
        results = lxt_run([job(models[name], x, variant) for name, variant in keys])
    except LXTUnavailable as exc:
        pytest.skip(str(exc))
    return {**models, "x": x, **dict(zip(keys, results))}


def max_relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


def target_logits(model, x):
    with torch.no_grad():
        return model(x)[torch.arange(len(x)), TARGETS]


# --- the harness against independent facts ------------------------------------------------

def test_lxt_forward_is_the_models_and_relevance_has_the_inputs_shape(lxt):
    with torch.no_grad():
        logits = lxt["model"](lxt["x"])
    for variant in VARIANTS:
        result = lxt[("model", variant)]
        assert torch.allclose(result["logits"], logits, rtol=0, atol=1e-12)
        assert result["relevance"].shape == lxt["x"].shape
        assert result["relevance"].dtype == torch.float64
        assert torch.isfinite(result["relevance"]).all()
        assert result["token_relevance"].shape == (2, 1 + (32 // 8) ** 2)


def test_lxt_cp_lrp_conserves_the_target_logit_on_a_bias_free_vit(lxt):
    """Without biases, class token and position embeddings, LRP-0, LayerNorm with its standard
    deviation constant, GELU's identity rule and constant attention weights make the explained
    function linear and homogeneous in the pixels: the relevance sums to the logit."""
    logits = target_logits(lxt["free"], lxt["x"])
    cp = lxt[("free", "cp_lrp")]
    assert torch.allclose(cp["relevance"].sum((1, 2, 3)), logits, rtol=1e-10, atol=0)
    assert torch.allclose(cp["token_relevance"].sum(1), logits, rtol=1e-10, atol=0)
    # AttnLRP's softmax rule is not conservative (its bias term absorbs relevance): not vacuous
    attn = lxt[("free", "attnlrp")]["relevance"].sum((1, 2, 3))
    assert (attn - logits).abs().min() > 1e-3 * logits.abs().max()


def rules_written_out(model, x, variant):
    """torchvision's ViT forward by hand, each rule as a change of the gradient such that
    input x gradient is the relevance: LRP-0 on linear maps (their own gradient), LayerNorm
    with the standard deviation detached, GELU as ``h * (gelu(h) / h).detach()``, the uniform
    rule on ``Q Kᵀ`` and ``A V`` as a halved gradient on each operand, the softmax with its own
    gradient (its Taylor rule); CP-LRP: attention weights computed from detached q and k."""
    def half(t):
        return t * 0.5 + (t * 0.5).detach()

    def layer_norm(ln, h):
        std = (h.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
        return (h - h.mean(-1, keepdim=True)) / std.detach() * ln.weight + ln.bias

    x = x.clone().requires_grad_(True)
    n = x.shape[0]
    tokens = model.conv_proj(x).flatten(2).transpose(1, 2)
    tokens = torch.cat([model.class_token.expand(n, -1, -1), tokens], 1) + model.encoder.pos_embedding
    for block in model.encoder.layers:
        attention = block.self_attention
        heads, width = attention.num_heads, attention.head_dim
        h = layer_norm(block.ln_1, tokens)
        q, k, v = (t.view(n, -1, heads, width).transpose(1, 2)
                   for t in F.linear(h, attention.in_proj_weight, attention.in_proj_bias).chunk(3, -1))
        if variant == "cp_lrp":
            a = torch.softmax(q.detach() @ k.detach().transpose(-1, -2) / width ** 0.5, -1)
            mixed = a @ v
        else:
            a = torch.softmax(half(q) @ half(k).transpose(-1, -2) / width ** 0.5, -1)
            mixed = half(a) @ half(v)
        tokens = tokens + attention.out_proj(mixed.transpose(1, 2).reshape(n, -1, heads * width))
        mlp = block.mlp
        h = mlp[0](layer_norm(block.ln_2, tokens))
        tokens = tokens + mlp[3](h * (F.gelu(h) / h).detach())
    logits = model.heads.head(layer_norm(model.encoder.ln, tokens)[:, 0])
    logits[torch.arange(n), TARGETS].sum().backward()
    return logits.detach(), (x * x.grad).detach()


@pytest.mark.parametrize("variant", VARIANTS)
def test_lxt_equals_the_published_rules_written_out(lxt, variant):
    model = lxt["model"]
    for p in model.parameters():
        p.requires_grad_(False)
    logits, reference = rules_written_out(model, lxt["x"], variant)
    assert torch.allclose(logits, lxt[("model", variant)]["logits"], rtol=0, atol=1e-12)
    assert max_relative(lxt[("model", variant)]["relevance"], reference) < 1e-8
    # the rules matter on this model: plain input x gradient is far from them
    x = lxt["x"].clone().requires_grad_(True)
    model(x)[torch.arange(2), TARGETS].sum().backward()
    assert max_relative((x * x.grad).detach(), reference) > 1e-2


def test_softmax_gradient_times_input_is_the_taylor_rule():
    """Why AttnLRP needs no softmax patch in LXT's gradient x input form (Achtibat et al.
    2024, Proposition 3.1): x * J_softmax(x)ᵀ (R / s) = x * (R - s * sum(R))."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    relevance_out = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    s = torch.softmax(x, -1)
    (s * (relevance_out / s).detach()).sum().backward()
    taylor = x.detach() * (relevance_out - s.detach() * relevance_out.sum(-1, keepdim=True))
    assert torch.allclose(x * x.grad, taylor, rtol=1e-12, atol=1e-14)


# --- attribkit against LXT ----------------------------------------------------------------

LRP0 = dict(epsilon=1e-12, stabilizer=1e-12)  # LXT: LRP-0 on linear maps and sums (plain gradient)


def attribkit_or_skip(model, inputs, target, variant):
    """attribkit's relevance with LXT's settings; a skip while ``variant`` is unknown."""
    try:
        return ak.explain(model, inputs, target, method="lrp", composite=variant, **LRP0).values
    except InvalidOptionError as exc:  # composite unknown, or no LRP kernel for token ids
        if variant in str(exc) or "'lrp'" in str(exc):
            pytest.skip(f"attribkit's LRP has no {variant!r} here yet: {exc}")
        raise


@pytest.mark.parametrize("variant", VARIANTS)
def test_attribkit_equals_lxt_on_torchvision_vit(lxt, variant):
    ours = attribkit_or_skip(lxt["model"], lxt["x"], TARGETS, variant)
    assert ours.shape == lxt["x"].shape
    assert max_relative(ours, lxt[("model", variant)]["relevance"]) < 1e-6


# --- language models (LXT in .venv-lxt, transformers<5) -------------------------------------

LLAMA = dict(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
             tie_word_embeddings=False)
TOKENS = torch.randint(0, 40, (2, 7), generator=torch.Generator().manual_seed(4))
NEXT = [3, 11]


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**LLAMA, attn_implementation="eager")).double().eval()
    return randomised(model, seed=5)


GPT2 = dict(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=32, bos_token_id=0,
            eos_token_id=0)


def gpt2_bias_free():
    """GPT-2 without biases and position embeddings: conservative by construction under CP-LRP."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(**GPT2, attn_implementation="eager")).double().eval()
    model = randomised(model, seed=6)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name == "transformer.wpe.weight":
                p.zero_()
    return model


def lxt_llm_or_skip(jobs):
    try:
        return lxt_llm_run(jobs)
    except LXTUnavailable as exc:
        pytest.skip(str(exc))


def test_lxt_cp_lrp_conserves_the_next_token_logit_on_llama_and_gpt2():
    """LLaMA has no biases: RMSNorm with its scale constant, constant attention weights and the
    gate detached (LXT's CP-LRP) make the logit linear and homogeneous in the embeddings; so
    does GPT-2's CP-LRP once its biases and position embeddings are zero. Up to float32:
    LXT's RMSNorm patch (like transformers' RMSNorm) computes in float32."""
    pytest.importorskip("transformers")
    models = {"llama": (llama(), LLAMA), "gpt2": (gpt2_bias_free(), GPT2)}
    results = lxt_llm_or_skip([dict(model_kind=kind, config=config, state_dict=model.state_dict(),
                                    input_ids=TOKENS, target=NEXT, variant="cp_lrp")
                               for kind, (model, config) in models.items()])
    for (kind, (model, _)), result in zip(models.items(), results):
        with torch.no_grad():
            logits = model(TOKENS).logits
        assert torch.allclose(result["logits"], logits, rtol=0, atol=1e-12), kind
        relevance = result["relevance"].sum(1)
        assert torch.allclose(relevance, logits[[0, 1], -1, NEXT], rtol=1e-5, atol=0), kind


@pytest.mark.parametrize("variant", VARIANTS)
def test_attribkit_equals_lxt_on_llama(variant):
    pytest.importorskip("transformers")
    model = llama()
    ours = attribkit_or_skip(model, TOKENS, torch.tensor(NEXT), variant)
    reference = lxt_llm_or_skip([dict(model_kind="llama", config=LLAMA, state_dict=model.state_dict(),
                                      input_ids=TOKENS, target=NEXT, variant=variant)])[0]["relevance"]
    ours = ours.sum(-1) if ours.dim() == 3 else ours
    assert ours.shape == reference.shape
    assert max_relative(ours, reference) < 1e-4  # LXT's RMSNorm runs in float32
