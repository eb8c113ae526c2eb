"""Attention methods on text (raw attention, rollout, Chefer's generic attention) against
references written here from Hugging Face's own ``output_attentions=True`` of the same
weights in ``attn_implementation="eager"``, one text at a time; the explained row of
bidirectional and causal models; padding; the untouched model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

import attribkit as ak  # noqa: E402
from attribkit.errors import InvalidOptionError, LayerError  # noqa: E402
from attribkit.testing import assert_model_untouched  # noqa: E402
from attribkit.text.attention import is_bidirectional  # noqa: E402
from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, tiny_llama, word_tokenizer  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog ran", "the red bird was very good"]
METHODS = ("raw_attention", "attention_rollout", "generic_attention")


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module")
def bert_tok():
    return word_tokenizer(cls_sep=True)


def pair(build, tok):
    """The model in its default attention (sdpa) and the same weights in eager attention."""
    model, reference = build(tok, layers=3), build(tok, layers=3)
    reference.set_attn_implementation("eager")
    assert model.config._attn_implementation == "sdpa"
    return model, reference


@pytest.fixture(scope="module")
def gpt2(tok):
    return pair(tiny_gpt2, tok)


@pytest.fixture(scope="module")
def llama(tok):
    return pair(tiny_llama, tok)


@pytest.fixture(scope="module")
def bert(bert_tok):
    return pair(tiny_bert_classifier, bert_tok)


def reference(method, model, ids, row, score):
    """``method`` on one unpadded row ``ids`` (1, L), by hand from the eager attentions:
    the ``row`` of the full ``L x L`` matrix; ``score(output)`` for generic attention."""
    out = model(ids, output_attentions=True)
    maps = [a[0] for a in out.attentions]  # (heads, L, L)
    eye = torch.eye(ids.shape[1])
    if method == "raw_attention":
        return maps[-1].mean(0)[row].detach()
    if method == "attention_rollout":
        rolled = eye
        for a in maps:
            mixed = 0.5 * a.mean(0) + 0.5 * eye
            rolled = (mixed / mixed.sum(-1, keepdim=True)) @ rolled
        return rolled[row].detach()
    for a in out.attentions:
        a.retain_grad()
    score(out).backward()
    relevance = eye
    for a in out.attentions:
        relevance = relevance + (a.grad[0] * a[0]).clamp(min=0).mean(0) @ relevance
    return relevance[row].detach()


def ids_of(tok, text):
    return tok([text], return_tensors="pt")["input_ids"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_next_token_reads_the_last_row(method, name, tok, request):
    model, eager = request.getfixturevalue(name)
    next_tokens = [5, 9, 12]
    result = ak.explain(model, TEXTS, next_tokens, method=method, tokenizer=tok)
    for i, text in enumerate(TEXTS):
        ids = ids_of(tok, text)
        n = ids.shape[1]
        expected = reference(method, eager, ids, n - 1,
                             lambda out: out.logits[0, n - 1].log_softmax(-1)[next_tokens[i]])
        torch.testing.assert_close(result.values[i, :n], expected, rtol=1e-4, atol=1e-6)
        assert not result.values[i, n:].any()


@pytest.mark.parametrize("method", METHODS)
def test_continuation_rows_one_per_output_token(method, tok, llama):
    model, eager = llama
    prompts, continuations = ["the cat sat", "a dog ran on the"], ["on the rug", "mat"]
    result = ak.explain(model, prompts, ak.Continuation(continuations), method=method, tokenizer=tok)
    for i, (prompt, cont) in enumerate(zip(prompts, continuations)):
        n = ids_of(tok, prompt).shape[1]
        full = ids_of(tok, f"{prompt} {cont}")
        outs = full[0, n:]
        for j, token in enumerate(outs.tolist()):
            q = n - 1 + j
            expected = reference(method, eager, full, q, lambda out: out.logits[0, q].log_softmax(-1)[token])
            torch.testing.assert_close(result.matrix[i, j, :n], expected[:n], rtol=1e-4, atol=1e-6)
        assert not result.matrix[i, len(outs):].any()
    torch.testing.assert_close(result.values, result.matrix.sum(1))


@pytest.mark.parametrize("method", METHODS)
def test_bidirectional_classifier_reads_the_cls_row(method, bert_tok, bert):
    model, eager = bert
    result = ak.explain(model, TEXTS, 1, method=method, tokenizer=bert_tok)
    for i, text in enumerate(TEXTS):
        ids = ids_of(bert_tok, text)
        n = ids.shape[1]
        expected = reference(method, eager, ids, 0, lambda out: out.logits[0, 1])
        torch.testing.assert_close(result.values[i, :n], expected, rtol=1e-4, atol=1e-6)
        assert not result.values[i, n:].any()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["gpt2", "llama", "bert"])
def test_eager_attention_is_read_from_output_attentions(method, name, tok, bert_tok, request):
    model, eager = request.getfixturevalue(name)
    tokenizer = bert_tok if name == "bert" else tok
    fused = ak.explain(model, TEXTS, 1, method=method, tokenizer=tokenizer)
    with assert_model_untouched(eager):
        by_hand = ak.explain(eager, TEXTS, 1, method=method, tokenizer=tokenizer)
    assert eager.config._attn_implementation == "eager"
    torch.testing.assert_close(by_hand.values, fused.values, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_one_text_at_a_time_and_chunks(method, tok, gpt2):
    model, _ = gpt2
    together = ak.explain(model, TEXTS, 7, method=method, tokenizer=tok)
    chunked = ak.explain(model, TEXTS, 7, method=method, tokenizer=tok, batch_size=2)
    torch.testing.assert_close(chunked.values, together.values)
    for i, text in enumerate(TEXTS):
        alone = ak.explain(model, [text], 7, method=method, tokenizer=tok)
        n = alone.values.shape[1]
        torch.testing.assert_close(together.values[i, :n], alone.values[0], rtol=1e-5, atol=1e-7)


def test_causal_and_bidirectional_are_told_apart(tok, bert_tok, gpt2, bert):
    from attribkit.text.attention import attention_maps
    from attribkit.text.inputs import text_batch
    from attribkit.text.model import TextModel
    from attribkit.text.targets import plan_for

    def maps_of(model, tokenizer):
        text_model = TextModel(model)
        plan = plan_for(text_model, text_batch(TEXTS, tokenizer), 1)
        with torch.no_grad():
            return attention_maps(text_model, plan)[1], plan.mask

    assert not is_bidirectional(*maps_of(gpt2[0], tok))
    assert is_bidirectional(*maps_of(bert[0], bert_tok))
    # a one-token-per-text batch has no pair of real tokens above the diagonal
    maps, mask = maps_of(bert[0], bert_tok)
    assert not is_bidirectional(maps, mask & (torch.arange(mask.shape[1]) < 1))
    # row= overrides the rule: the [CLS] row by default, the last token's row on request
    model = bert[0]
    auto = ak.explain(model, TEXTS, 1, method="attention_rollout", tokenizer=bert_tok)
    first = ak.explain(model, TEXTS, 1, method="attention_rollout", tokenizer=bert_tok, row="first")
    last = ak.explain(model, TEXTS, 1, method="attention_rollout", tokenizer=bert_tok, row="query")
    torch.testing.assert_close(auto.values, first.values)
    n = ids_of(bert_tok, TEXTS[1]).shape[1]
    expected = reference("attention_rollout", bert[1], ids_of(bert_tok, TEXTS[1]), n - 1, None)
    torch.testing.assert_close(last.values[1, :n], expected, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(last.values, first.values)
    # a causal model's first row attends only to itself
    causal_first = ak.explain(gpt2[0], TEXTS, 1, method="raw_attention", tokenizer=tok, row="first")
    assert torch.equal(causal_first.values[:, 0], torch.ones(3))
    assert not causal_first.values[:, 1:].any()


@pytest.mark.parametrize("method", METHODS)
def test_model_untouched(method, tok, llama):
    model, _ = llama
    with assert_model_untouched(model):
        ak.explain(model, TEXTS, ak.Continuation("on the mat"), method=method, tokenizer=tok)
    assert model.config._attn_implementation == "sdpa"


def test_head_fusion_max(tok, gpt2):
    model, eager = gpt2
    result = ak.explain(model, TEXTS[:1], 3, method="raw_attention", tokenizer=tok, head_fusion="max")
    ids = ids_of(tok, TEXTS[0])
    expected = eager(ids, output_attentions=True).attentions[-1][0].amax(0)[-1].detach()
    torch.testing.assert_close(result.values[0], expected)


class NoAttention(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        return self.head(self.embed(ids).mean(1))


def test_errors_before_work(tok, gpt2):
    model, _ = gpt2
    with assert_model_untouched(model):
        with pytest.raises(InvalidOptionError, match="row must be one of"):
            ak.explain(model, TEXTS, 1, method="generic_attention", tokenizer=tok, row="cls")
        with pytest.raises(InvalidOptionError, match="head_fusion"):
            ak.explain(model, TEXTS, 1, method="attention_rollout", tokenizer=tok, head_fusion="median")
        with pytest.raises(InvalidOptionError):
            ak.explain(model, TEXTS, 1, method="attention_rollout", tokenizer=tok, discard_ratio=0.5)
    plain = NoAttention(len(tok))
    with assert_model_untouched(plain), pytest.raises(LayerError, match="gave neither"):
        ak.explain(plain, TEXTS, 1, method="attention_rollout", tokenizer=tok)
