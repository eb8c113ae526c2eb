"""The built-in integrated gradients: images against Captum's ``IntegratedGradients``,
text against Captum's ``LLMGradientAttribution(LayerIntegratedGradients)`` (GPT-2 and
LLaMA) and ``LayerIntegratedGradients`` (a BERT classifier), completeness by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

import attribkit as ak  # noqa: E402
from attribkit.errors import InvalidOptionError  # noqa: E402
from attribkit.testing import TinyCNN, assert_model_untouched, forward_rows  # noqa: E402
from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, tiny_llama, word_tokenizer  # noqa: E402
from attribkit.torch.integrated import METHODS  # noqa: E402

PROMPTS = ["the cat sat on the mat", "a dog ran"]
OUTPUTS = ["under the rug", "on"]


def captum_factor(method, n):
    """Captum's trapezoid weights are ``1/n`` (halved at the ends) on ``n`` points
    ``0..1``, so they sum to ``(n-1)/n``; attribkit's are ``1/(n-1)`` (they sum to 1)."""
    return n / (n - 1) if method == "riemann_trapezoid" else 1.0


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return TinyCNN().double().eval()


@pytest.mark.parametrize("method", METHODS)
def test_images_equal_captum(cnn, method):
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    ours = ak.explain(cnn, x, [0, 3, 1], method="integrated_gradients", n_steps=6, integration_method=method)
    ref = captum_attr.IntegratedGradients(cnn).attribute(x, target=[0, 3, 1], n_steps=6, method=method)
    torch.testing.assert_close(ours.values, ref * captum_factor(method, 6))


def test_image_baselines_chunks_and_top_class_equal_captum(cnn):
    x = torch.randn(3, 3, 8, 8, dtype=torch.float64)
    base = torch.rand(3, 8, 8, dtype=torch.float64)
    top = cnn(x).argmax(1)
    ig = captum_attr.IntegratedGradients(cnn)
    for baseline, captum_baseline in [(0.5, 0.5), (base, base[None].expand_as(x))]:
        ref = ig.attribute(x, baselines=captum_baseline, target=top, n_steps=5)
        for opts in [{}, {"internal_batch_size": 4}, {"batch_size": 2, "internal_batch_size": 3}]:
            r = ak.explain(cnn, x, method="ig", n_steps=5, baseline=baseline, **opts)
            torch.testing.assert_close(r.values, ref)
            assert r.target.tolist() == top.tolist()


def test_completeness_on_a_linear_model_for_every_rule():
    """On a linear model the gradient is constant: attributions sum to ``S(x) - S(x')``
    exactly for any rule whose weights sum to 1."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(48, 4)).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    for method in METHODS:
        r = ak.explain(model, x, 2, method="ig", n_steps=4, integration_method=method, baseline=-1.0)
        expected = model(x)[:, 2] - model(torch.full_like(x, -1.0))[:, 2]
        torch.testing.assert_close(r.values.sum((1, 2, 3)), expected.detach())


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, tok):
    return (tiny_gpt2 if request.param == "gpt2" else tiny_llama)(tok).double()


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_right", "riemann_trapezoid"])
def test_text_equals_captum_llm_gradient_attribution(tok, lm, method):
    unk = tok.unk_token_id
    for baseline, token in [(None, tok.pad_token_id), (unk, unk)]:
        ours = ak.explain(lm, PROMPTS, ak.Continuation(OUTPUTS), method="integrated_gradients", tokenizer=tok,
                          n_steps=5, integration_method=method, baseline=baseline)
        llm = captum_attr.LLMGradientAttribution(
            captum_attr.LayerIntegratedGradients(lm, lm.get_input_embeddings()), tok)
        for i, (prompt, output) in enumerate(zip(PROMPTS, OUTPUTS)):
            res = llm.attribute(captum_attr.TextTokenInput(prompt, tok, baselines=token), target=output,
                                n_steps=5, method=method)
            n_out, n_in = res.token_attr.shape
            factor = captum_factor(method, 5)
            torch.testing.assert_close(ours.matrix[i, :n_out, :n_in], res.token_attr * factor)
            torch.testing.assert_close(ours.values[i, :n_in], res.seq_attr * factor)
            assert not ours.values[i, n_in:].any()


def test_classifier_equals_captum_layer_integrated_gradients():
    tok = word_tokenizer(cls_sep=True)
    clf = tiny_bert_classifier(tok).double()
    texts = ["the movie was very good", "bad film", "a great plot"]
    enc = tok(texts, return_tensors="pt", padding=True)
    ours = ak.explain(clf, texts, [0, 2, 1], method="ig", tokenizer=tok, n_steps=6)

    def forward(ids, mask):
        return clf(ids, attention_mask=mask).logits

    lig = captum_attr.LayerIntegratedGradients(forward, clf.get_input_embeddings())
    ref = lig.attribute(enc["input_ids"], baselines=torch.full_like(enc["input_ids"], tok.pad_token_id),
                        target=[0, 2, 1], additional_forward_args=(enc["attention_mask"],), n_steps=6).sum(-1)
    torch.testing.assert_close(ours.values, ref * enc["attention_mask"])


def test_zero_embeddings_baseline_is_complete(tok):
    """With Gauss-Legendre on a smooth model, the attributions of a score sum to its
    change from the baseline (prompt embeddings zero), computed here by two forwards."""
    model = tiny_gpt2(tok).double()
    r = ak.explain(model, ["the cat sat"], ak.Continuation(["on the"]), method="ig", tokenizer=tok,
                   n_steps=24, baseline="zeros")
    row = tok(["the cat sat on the"], return_tensors="pt")["input_ids"]
    e = model.get_input_embeddings()(row).detach()
    zero = e.clone()
    zero[:, :3] = 0

    def scores(embeds):
        lp = model(inputs_embeds=embeds).logits[0].log_softmax(-1)
        return torch.stack([lp[2, row[0, 3]], lp[3, row[0, 4]]])

    with torch.no_grad():
        torch.testing.assert_close(r.matrix[0].sum(-1), scores(e) - scores(zero), rtol=1e-6, atol=1e-6)


def test_text_is_one_forward_of_all_steps_and_chunks_agree(tok):
    model = tiny_gpt2(tok).double()
    texts = ["the cat sat on the mat", "a dog", "the red bird was very good"]
    with forward_rows(model.lm_head) as rows:  # forwards that reach the output
        whole = ak.explain(model, texts, 5, method="ig", tokenizer=tok, n_steps=4)
    # the plan's forward (the first text: the target is given), the memory meter's (one row),
    # then every step of every text at once (12 rows fit the default budget)
    assert rows == [1, 1, 12]
    with forward_rows(model.lm_head) as rows:
        chunked = ak.explain(model, texts, 5, method="ig", tokenizer=tok, n_steps=4, internal_batch_size=5,
                             batch_size=2)
    assert rows == [1, 5, 3, 4]  # plan; texts 0-1: 8 rows in 5 + 3; text 2: 4 rows
    torch.testing.assert_close(whole.values, chunked.values)
    for i, text in enumerate(texts):
        one = ak.explain(model, [text], 5, method="ig", tokenizer=tok, n_steps=4)
        torch.testing.assert_close(whole.values[i, :one.values.shape[1]], one.values[0])


@pytest.mark.parametrize("option, value, words", [
    ("n_steps", 0, "n_steps"), ("integration_method", "simpson", "integration_method"),
    ("baseline", "pad", "baseline"), ("baseline", 1.5, "baseline"), ("baseline", 10_000, "out of range"),
    ("internal_batch_size", 0, "internal_batch_size")])
def test_bad_text_options_are_named_and_leave_the_model(tok, option, value, words):
    model = tiny_gpt2(tok)
    with assert_model_untouched(model), pytest.raises(InvalidOptionError, match=words):
        ak.explain(model, PROMPTS, method="ig", tokenizer=tok, **{option: value})


@pytest.mark.parametrize("option, value, words", [
    ("n_steps", 1, "n_steps"), ("baseline", torch.zeros(2, 3, 8, 8), "shape of one input"),
    ("baseline", "black", "baseline"), ("internal_batch_size", -2, "internal_batch_size")])
def test_bad_image_options_are_named_and_leave_the_model(cnn, option, value, words):
    opts = {"integration_method": "riemann_trapezoid", option: value}
    with assert_model_untouched(cnn), pytest.raises(InvalidOptionError, match=words):
        ak.explain(cnn, torch.randn(3, 3, 8, 8, dtype=torch.float64), method="ig", **opts)
