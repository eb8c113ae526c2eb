"""LRP on text (AttnLRP, CP-LRP): equal to a reference written here, conservation,
batching, the model untouched, clear errors.

The reference re-implements tiny BERT and GPT-2 models by hand (explicit softmax, the
Hugging Face weights) and applies the published rules in the "input x gradient" form
(as LXT writes them): each rule is a change of the forward's gradient such that
``input * gradient`` is the relevance. LRP-0 on linear layers and sums is the plain
gradient; LayerNorm with its standard deviation detached; GELU and tanh as
``x * (f(x) / x).detach()`` (the identity rule); the products ``Q Kᵀ`` and ``A V`` as
``(a @ b.detach() + a.detach() @ b) / 2`` (the uniform rule); the softmax with its own
gradient, which in this form is the Taylor rule ``x ⊙ (R - s ΣR)``; CP-LRP: ``A``
detached. The engine instead sends relevance through autograd functions, on the fused
(SDPA) models.
"""

import math
import threading

import pytest
import torch
import torch.nn.functional as F

import attribkit as ak
from attribkit.errors import InvalidOptionError
from attribkit.testing import assert_model_untouched
from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, tiny_llama, word_tokenizer
from attribkit.torch.lrp.composites import LRPRuleError

TINY = 1e-12  # epsilon and stabilizer: LRP-0 in float64
TEXTS = ["the cat sat on the mat", "a dog ran"]


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module")
def btok():
    return word_tokenizer(cls_sep=True)


def randomised(model, seed=0, scale=0.4, biases=True, positions=True):
    """Every parameter random in float64 (the configs initialise with std 0.02 and biases
    to 0, which would hide mistakes); ``biases=False`` zeroes every bias, ``positions=False``
    the position and token-type embeddings."""
    gen = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale
            norm = "LayerNorm" in name or ".ln_" in name or "norm" in name
            p.copy_(1 + noise if norm and name.endswith("weight") else noise)
            if (not biases and name.endswith("bias")) or (not positions and (
                    "position_embeddings" in name or "token_type" in name or name.endswith("wpe.weight"))):
                p.zero_()
    return model


def twin(make, tokenizer, **options):
    """The same random weights with SDPA (what attribkit runs) and eager attention."""
    fused = randomised(make(tokenizer), **options)
    eager = randomised(make(tokenizer), **options)
    eager.set_attn_implementation("eager")
    return fused, eager


# ------------------------------------------------------------------ the reference


def linear(x, layer, transposed=False):
    weight = layer.weight if not transposed else layer.weight.T
    return F.linear(x, weight, layer.bias)


def layer_norm(x, norm):
    centred = x - x.mean(-1, keepdim=True)
    sigma = (centred.pow(2).mean(-1, keepdim=True) + norm.eps).sqrt()
    return centred / sigma.detach() * norm.weight + norm.bias


def identity(fn, x):
    return x * (fn(x) / x).detach()


def uniform(a, b):
    return (a @ b.detach() + a.detach() @ b) / 2


def attention(q, k, v, composite, causal):
    logits = uniform(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if causal:
        n = q.shape[-2]
        logits = logits.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    probs = logits.softmax(-1)
    if composite == "cp_lrp":
        return probs.detach() @ v
    return uniform(probs, v)


def heads(x, n):
    b, t, d = x.shape
    return x.view(b, t, n, d // n).transpose(1, 2)


def merged(x):
    b, n, t, h = x.shape
    return x.transpose(1, 2).reshape(b, t, n * h)


def bert_logits(model, embeds, composite):
    emb = model.bert.embeddings
    t = embeds.shape[1]
    x = embeds + emb.position_embeddings.weight[:t] + emb.token_type_embeddings.weight[0]
    x = layer_norm(x, emb.LayerNorm)
    for layer in model.bert.encoder.layer:
        a = layer.attention.self
        n = model.config.num_attention_heads
        q, k, v = (heads(linear(x, m), n) for m in (a.query, a.key, a.value))
        out = linear(merged(attention(q, k, v, composite, causal=False)), layer.attention.output.dense)
        x = layer_norm(out + x, layer.attention.output.LayerNorm)
        h = identity(F.gelu, linear(x, layer.intermediate.dense))
        x = layer_norm(linear(h, layer.output.dense) + x, layer.output.LayerNorm)
    pooled = identity(torch.tanh, linear(x[:, 0], model.bert.pooler.dense))
    return linear(pooled, model.classifier)


def gpt2_logits(model, embeds, composite):
    tr = model.transformer
    n = model.config.n_head
    x = embeds + tr.wpe.weight[:embeds.shape[1]]
    for block in tr.h:
        qkv = linear(layer_norm(x, block.ln_1), block.attn.c_attn, transposed=True)
        q, k, v = (heads(part, n) for part in qkv.split(x.shape[-1], dim=-1))
        x = x + linear(merged(attention(q, k, v, composite, causal=True)), block.attn.c_proj, transposed=True)
        h = identity(lambda z: F.gelu(z, approximate="tanh"),
                     linear(layer_norm(x, block.ln_2), block.mlp.c_fc, transposed=True))
        x = x + linear(h, block.mlp.c_proj, transposed=True)
    return F.linear(layer_norm(x, tr.ln_f), model.lm_head.weight)


def rms_norm(x, norm):
    return x / (x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).sqrt().detach() * norm.weight


def llama_logits(model, embeds, composite):
    """LLaMA: RMSNorm, rotary positions (linear in Q and K: their plain gradient),
    grouped-query attention, SwiGLU with SiLU's identity rule and the uniform rule on the
    gated product (CP-LRP: the activated gate a constant factor)."""
    body, config = model.model, model.config
    n, groups = config.num_attention_heads, config.num_key_value_heads
    cos, sin = (t[:, None] for t in body.rotary_emb(embeds, torch.arange(embeds.shape[1])[None]))

    def rotary(x):
        half = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., half:], x[..., :half]), -1) * sin

    x = embeds
    for layer in body.layers:
        a, mlp = layer.self_attn, layer.mlp
        h = rms_norm(x, layer.input_layernorm)
        q, k = rotary(heads(linear(h, a.q_proj), n)), rotary(heads(linear(h, a.k_proj), groups))
        v = heads(linear(h, a.v_proj), groups)
        k, v = (t.repeat_interleave(n // groups, 1) for t in (k, v))
        x = x + linear(merged(attention(q, k, v, composite, causal=True)), a.o_proj)
        h = rms_norm(x, layer.post_attention_layernorm)
        gate, up = identity(F.silu, linear(h, mlp.gate_proj)), linear(h, mlp.up_proj)
        gated = gate.detach() * up if composite == "cp_lrp" else (gate * up.detach() + gate.detach() * up) / 2
        x = x + linear(gated, mlp.down_proj)  # CP-LRP: the activated gate constant, as LXT
    return F.linear(rms_norm(x, body.norm), model.lm_head.weight)


def reference(forward, model, ids, composite, read):
    """``Σ_d E ⊙ ∂̃s/∂E`` per token, for the score ``read(logits)``."""
    embeds = model.get_input_embeddings().weight[ids].detach().requires_grad_()
    score = read(forward(model, embeds, composite))
    (grad,) = torch.autograd.grad(score, embeds)
    return (embeds * grad).sum(-1)[0].detach()


def ids_of(tokenizer, text):
    return tokenizer([text], return_tensors="pt")["input_ids"]


def relative(a, b):
    return float((a - b).abs().max() / b.abs().max())


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_bert_equals_reference(btok, composite):
    fused, eager = twin(tiny_bert_classifier, btok)
    ids = ids_of(btok, TEXTS[0])
    ref = reference(bert_logits, eager, ids, composite, lambda out: out[0, 2])
    assert torch.allclose(bert_logits(eager, eager.get_input_embeddings().weight[ids], composite),
                          eager(ids).logits)  # the hand-written forward is the model's
    result = ak.explain(fused, TEXTS[:1], 2, method="lrp", composite=composite, tokenizer=btok,
                        epsilon=TINY, stabilizer=TINY)
    assert relative(result.values[0], ref) < 1e-9
    assert ref[1:-1].abs().max() > 0.01 * ref.abs().max()  # not all on [CLS]


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_gpt2_equals_reference_per_output_token(tok, composite):
    fused, eager = twin(tiny_gpt2, tok)
    prompt, continuation = TEXTS[0], "on the rug"
    full = ids_of(tok, f"{prompt} {continuation}")
    n = ids_of(tok, prompt).shape[1]
    assert torch.allclose(gpt2_logits(eager, eager.get_input_embeddings().weight[full], "attnlrp"),
                          eager(full).logits)
    result = ak.explain(fused, [prompt], ak.Continuation(continuation), method="lrp", composite=composite,
                        tokenizer=tok, epsilon=TINY, stabilizer=TINY)
    assert result.meta["score"] == "logit"
    for j in range(3):  # output token j: the logit of full[n + j] at position n + j - 1
        ref = reference(gpt2_logits, eager, full, composite,
                        lambda out, j=j: out[0, n + j - 1, full[0, n + j]])
        assert relative(result.matrix[0, j, :n], ref[:n]) < 1e-9
    assert torch.allclose(result.values, result.matrix.sum(1))


@pytest.mark.parametrize("composite", ["attnlrp", "cp_lrp"])
def test_llama_equals_reference(tok, composite):
    """LlamaRMSNorm computes in float32, so the models agree to float32's precision."""
    fused, eager = twin(tiny_llama, tok)
    ids = ids_of(tok, TEXTS[0])
    assert torch.allclose(llama_logits(eager, eager.get_input_embeddings().weight[ids], composite),
                          eager(ids).logits, rtol=1e-5, atol=1e-6)
    ref = reference(llama_logits, eager, ids, composite, lambda out: out[0, -1, 7])
    result = ak.explain(fused, ids, 7, method="lrp", composite=composite, tokenizer=tok,
                        epsilon=TINY, stabilizer=TINY)
    assert relative(result.values[0], ref) < 1e-5


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_conservation_without_biases_exact(tok, make):
    """CP-LRP with no biases and no position embeddings (LLaMA has neither; rotary
    positions touch only Q and K, which get no relevance with A constant): the tokens'
    relevance sums to the explained logit (to float32's precision on LLaMA, whose
    RMSNorm computes in float32)."""
    model = randomised(make(tok), biases=False, positions=False)
    ids = ids_of(tok, TEXTS[0])
    result = ak.explain(model, ids, 7, method="lrp", composite="cp_lrp", tokenizer=tok,
                        epsilon=TINY, stabilizer=TINY)
    logit = float(model(ids).logits[0, -1, 7].detach())
    tolerance = 1e-6 if make is tiny_llama else 1e-9
    assert abs(float(result.values.sum()) - logit) < tolerance * abs(logit)


DECODER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
               num_key_value_heads=1, max_position_embeddings=64)
ENCODER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
               max_position_embeddings=64)
ARCHITECTURES = {  # model class: config options (what each adds to GPT-2, LLaMA and BERT)
    "Qwen2ForCausalLM": DECODER,  # biases on Q, K, V
    "GemmaForCausalLM": dict(DECODER, head_dim=8),  # RMSNorm scale 1 + weight, scaled embeddings, GELU gate
    "Phi3ForCausalLM": DECODER,  # fused QKV and gate-up projections
    "GPTNeoXForCausalLM": dict(ENCODER),  # partial rotary, parallel residual
    "OPTForCausalLM": dict(hidden_size=16, ffn_dim=32, num_hidden_layers=2, num_attention_heads=2,
                           max_position_embeddings=64, word_embed_proj_dim=16),  # offset positions
    "GPTBigCodeForCausalLM": dict(n_embd=16, n_layer=2, n_head=2, n_positions=64),  # multi-query attention
    "BloomForCausalLM": dict(hidden_size=16, n_layer=2, n_head=2),  # BloomGelu, ALiBi scores by baddbmm
    "RobertaForSequenceClassification": dict(ENCODER, pad_token_id=1),
    "DistilBertForSequenceClassification": dict(dim=16, hidden_dim=32, n_layers=2, n_heads=2,
                                                max_position_embeddings=64),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_conservation_on_other_architectures(tok, name):
    """CP-LRP without biases and position embeddings on more Hugging Face families: the
    tokens' relevance sums to the logit (their RMSNorms compute in float32)."""
    import transformers

    model_class = getattr(transformers, name)
    config = model_class.config_class(**{"vocab_size": len(tok), "pad_token_id": 0, "bos_token_id": 4,
                                         "eos_token_id": 4, **ARCHITECTURES[name]})
    torch.manual_seed(0)
    model = model_class(config).double().eval()
    with torch.no_grad():
        for key, p in model.named_parameters():
            if key.endswith("bias") or "position" in key or "token_type" in key or "wpe" in key:
                p.zero_()
    ids = ids_of(tok, TEXTS[0])
    target = 1 if name.endswith("Classification") else 3
    result = ak.explain(model, ids, target, method="lrp", composite="cp_lrp", tokenizer=tok,
                        epsilon=TINY, stabilizer=TINY)
    logits = model(ids).logits.detach()
    logit = float(logits[0, target] if logits.ndim == 2 else logits[0, -1, target])
    assert abs(float(result.values.sum()) - logit) < 1e-6 * abs(logit)


def test_no_blocks(tok):
    """An empty ``nn.ModuleList`` (no transformer blocks) is a container, not a layer
    without a rule."""
    model = randomised(tiny_gpt2(tok, layers=0), biases=False, positions=False)
    ids = ids_of(tok, TEXTS[0])
    result = ak.explain(model, ids, 3, method="lrp", composite="cp_lrp", tokenizer=tok, epsilon=TINY,
                        stabilizer=TINY)
    assert abs(float(result.values.sum()) - float(model(ids).logits[0, -1, 3].detach())) < 1e-9


def test_conservation_bert_without_biases(btok):
    model = randomised(tiny_bert_classifier(btok), biases=False, positions=False)
    result = ak.explain(model, TEXTS[:1], 1, method="lrp", composite="cp_lrp", tokenizer=btok,
                        epsilon=TINY, stabilizer=TINY)
    logit = float(model(ids_of(btok, TEXTS[0])).logits[0, 1].detach())
    assert abs(float(result.values.sum()) - logit) < 1e-9 * abs(logit)


def test_biases_take_relevance(tok):
    """With biases and position embeddings the tokens do not receive the whole logit
    (the check above can fail)."""
    model = randomised(tiny_gpt2(tok))
    ids = ids_of(tok, TEXTS[0])
    result = ak.explain(model, ids, 7, method="lrp", composite="cp_lrp", tokenizer=tok)
    logit = float(model(ids).logits[0, -1, 7].detach())
    assert abs(float(result.values.sum()) - logit) > 1e-3 * abs(logit)


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_llama])
def test_batched_with_padding_equals_one_at_a_time(tok, make):
    model = randomised(make(tok))
    target = ak.Continuation(["on the rug", "under"])
    both = ak.explain(model, TEXTS, target, method="lrp", tokenizer=tok)
    for i, text in enumerate(TEXTS):
        one = ak.explain(model, [text], ak.Continuation([target.continuation[i]]), method="lrp", tokenizer=tok)
        n = one.values.shape[1]
        assert torch.allclose(both.values[i, :n], one.values[0], rtol=1e-9, atol=1e-12)
        assert torch.equal(both.values[i, n:], torch.zeros_like(both.values[i, n:]))
        assert torch.isfinite(both.values).all()


def test_bert_batched_equals_one_at_a_time(btok):
    model = randomised(tiny_bert_classifier(btok))
    both = ak.explain(model, TEXTS, [0, 2], method="lrp", tokenizer=btok)
    for i, text in enumerate(TEXTS):
        one = ak.explain(model, [text], [0, 2][i], method="lrp", tokenizer=btok)
        n = one.values.shape[1]
        assert torch.allclose(both.values[i, :n], one.values[0], rtol=1e-9, atol=1e-12)


def test_llama_float32_default_options(tok):
    """LLaMA in float32 with the defaults (attnlrp): RMSNorm, rotary positions, SwiGLU,
    grouped-query SDPA; finite, and the composites differ."""
    model = tiny_llama(tok)
    with assert_model_untouched(model):
        a = ak.explain(model, TEXTS, "on", method="lrp", tokenizer=tok)
        c = ak.explain(model, TEXTS, "on", method="lrp", composite="cp_lrp", tokenizer=tok)
    assert a.meta["options"]["composite"] == "attnlrp"
    assert torch.isfinite(a.values).all() and not torch.allclose(a.values, c.values)


@pytest.mark.parametrize("make", [tiny_gpt2, tiny_bert_classifier])
def test_model_untouched(tok, btok, make):
    tokenizer = btok if make is tiny_bert_classifier else tok
    model = make(tokenizer)
    with assert_model_untouched(model):
        ak.explain(model, TEXTS, None, method="lrp", tokenizer=tokenizer)


def test_threads_equal_the_serial_result(tok):
    """LRP's overrides live on shared modules: calls on one model take turns, and a
    gradient method running beside them sees the plain model."""
    model = tiny_llama(tok)
    serial = {m: ak.explain(model, TEXTS, "on", method=m, tokenizer=tok).values
              for m in ("lrp", "input_x_gradient")}
    results, errors = [], []
    barrier = threading.Barrier(4)

    def work(method):
        barrier.wait()
        try:
            for _ in range(3):
                results.append((method, ak.explain(model, TEXTS, "on", method=method, tokenizer=tok).values))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    with assert_model_untouched(model):
        threads = [threading.Thread(target=work, args=(m,)) for m in ("lrp", "lrp", "lrp", "input_x_gradient")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors and len(results) == 12
    assert all(torch.equal(values, serial[method]) for method, values in results)


def test_cnn_composite_refused_before_any_forward(tok):
    model = tiny_gpt2(tok)
    calls = []
    handle = model.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with assert_model_untouched(model), pytest.raises(InvalidOptionError, match="epsilon_plus_flat"):
            ak.explain(model, TEXTS, "on", method="lrp", composite="epsilon_plus_flat", tokenizer=tok)
        with pytest.raises(InvalidOptionError, match="epsilon"):
            ak.explain(model, TEXTS, "on", method="lrp", epsilon=-1.0, tokenizer=tok)
        with pytest.raises(InvalidOptionError, match="gamma"):
            ak.explain(model, TEXTS, "on", method="lrp", gamma=0.5, tokenizer=tok)
        for score in ("log_prob", "prob"):  # LRP starts from one logit: never silently the logit
            with pytest.raises(InvalidOptionError, match=f"explains the logit.*score='{score}'"):
                ak.explain(model, TEXTS, "on", method="lrp", score=score, tokenizer=tok)
    finally:
        handle.remove()
    assert calls == []
    explicit = ak.explain(model, TEXTS[:1], "on", method="lrp", score="logit", tokenizer=tok)
    assert torch.equal(explicit.values, ak.explain(model, TEXTS[:1], "on", method="lrp", tokenizer=tok).values)


class OffsetRMSNorm(torch.nn.Module):
    """Gemma's RMSNorm convention, ``x / rms(x) * (1 + weight)`` (``centre=True``: a
    LayerNorm written by hand, which no RMS rule covers)."""

    def __init__(self, weight, eps, centre=False):
        super().__init__()
        self.weight = torch.nn.Parameter(weight.detach() - 1)
        self.eps, self.centre = eps, centre

    def forward(self, x):
        x = x - x.mean(-1, keepdim=True) if self.centre else x
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * (1 + self.weight)


def test_rms_norm_with_offset_weight_equals_the_plain_one(tok):
    model = randomised(tiny_llama(tok))
    plain = ak.explain(model, TEXTS, "on", method="lrp", tokenizer=tok, epsilon=TINY, stabilizer=TINY).values
    norm = model.model.norm
    model.model.norm = OffsetRMSNorm(norm.weight, norm.variance_epsilon)
    offset = ak.explain(model, TEXTS, "on", method="lrp", tokenizer=tok, epsilon=TINY, stabilizer=TINY).values
    assert relative(offset, plain) < 1e-5  # LlamaRMSNorm computes in float32
    model.model.norm = OffsetRMSNorm(norm.weight, norm.variance_epsilon, centre=True)
    with assert_model_untouched(model), pytest.raises(LRPRuleError, match="'model.norm' of type OffsetRMSNorm"):
        ak.explain(model, TEXTS, "on", method="lrp", tokenizer=tok)


def test_unknown_layer_is_named(tok):
    class Odd(torch.nn.Module):
        def forward(self, x):
            return x

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lm = tiny_gpt2(tok)
            self.odd = Odd()

        def get_input_embeddings(self):
            return self.lm.get_input_embeddings()

        def forward(self, input_ids, attention_mask=None):
            return self.lm(input_ids, attention_mask=attention_mask).logits

    model = Wrapped()
    with assert_model_untouched(model), pytest.raises(LRPRuleError, match="'odd' of type Odd"):
        ak.explain(model, TEXTS, "on", method="lrp", tokenizer=tok)
