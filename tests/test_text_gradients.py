"""Gradient methods on text (saliency, input x gradient, smoothgrad) against
``torch.autograd.grad`` written here, through the model's own ``inputs_embeds``."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

import attribkit as ak  # noqa: E402
from attribkit.errors import InvalidOptionError  # noqa: E402
from attribkit.testing import assert_model_untouched  # noqa: E402
from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, tiny_llama, word_tokenizer  # noqa: E402

PROMPTS = ["the cat sat on the mat", "a dog ran"]
OUTPUTS = ["under the rug", "on"]


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def lm(request, tok):
    return (tiny_gpt2 if request.param == "gpt2" else tiny_llama)(tok).double()


@pytest.fixture(scope="module")
def bert():
    tok = word_tokenizer(cls_sep=True)
    return tok, tiny_bert_classifier(tok).double()


def ids(tok, text):
    return tok([text], return_tensors="pt", add_special_tokens=False)["input_ids"][0]


def lm_grads(model, prompt, output, embeds=None):
    """Per output token ``j``: ``∂ log p(y_j | prompt, y_<j) / ∂E`` on ``prompt + output``
    (``E``: the word embeddings, replaced by ``embeds`` when given), ``(n_out, L, D)``."""
    row = torch.cat([prompt, output])
    e = (model.get_input_embeddings()(row[None]).detach() if embeds is None else embeds[None]).requires_grad_()
    logits = model(inputs_embeds=e).logits[0]
    grads = []
    for j, y in enumerate(output.tolist()):
        score = logits[len(prompt) + j - 1].log_softmax(-1)[y]
        (g,) = torch.autograd.grad(score, e, retain_graph=True)
        grads.append(g[0])
    return torch.stack(grads)


def test_saliency_and_input_x_gradient_equal_autograd_per_output_token(tok, lm):
    sal = ak.explain(lm, PROMPTS, ak.Continuation(OUTPUTS), method="saliency", tokenizer=tok)
    ixg = ak.explain(lm, PROMPTS, ak.Continuation(OUTPUTS), method="input_x_gradient", tokenizer=tok)
    for i, (p, o) in enumerate(zip(PROMPTS, OUTPUTS)):
        prompt, output = ids(tok, p), ids(tok, o)
        g = lm_grads(lm, prompt, output)[:, :len(prompt)]
        e = lm.get_input_embeddings()(prompt).detach()
        n, m = len(output), len(prompt)
        torch.testing.assert_close(sal.matrix[i, :n, :m], g.norm(dim=-1))
        torch.testing.assert_close(ixg.matrix[i, :n, :m], (g * e).sum(-1))
        assert not sal.matrix[i, n:].any() and not sal.matrix[i, :, m:].any()
        torch.testing.assert_close(ixg.values[i, :m], (g * e).sum(-1).sum(0))


def noisy_reference(model, prompt, output, *, n, stdev, seed, absolute):
    """SmoothGrad by hand: the noise is drawn as documented (one CPU generator seeded
    with ``seed`` per text, ``(n, len(prompt), D)`` standard normal values in float32,
    scaled by ``stdev * std`` of the prompt's embeddings without Bessel's correction)."""
    e = model.get_input_embeddings()(torch.cat([prompt, output])).detach()
    m = len(prompt)
    noise = torch.randn((n, m, e.shape[-1]), generator=torch.Generator().manual_seed(seed)).double()
    noise = noise * stdev * e[:m].std(correction=0)
    grads = []
    for j in range(n):
        noisy = e.clone()
        noisy[:m] += noise[j]
        grads.append(lm_grads(model, prompt, output, noisy)[:, :m])
    grads = torch.stack(grads)            # (n, n_out, m, D)
    return grads.norm(dim=-1).mean(0) if absolute else grads.mean(0).norm(dim=-1)


@pytest.mark.parametrize("absolute", [True, False])
def test_smoothgrad_equals_noisy_gradients_by_hand(tok, lm, absolute):
    r = ak.explain(lm, PROMPTS, ak.Continuation(OUTPUTS), method="smoothgrad", tokenizer=tok,
                   n_samples=3, stdev=0.3, seed=7, abs=absolute)
    for i, (p, o) in enumerate(zip(PROMPTS, OUTPUTS)):
        prompt, output = ids(tok, p), ids(tok, o)
        ref = noisy_reference(lm, prompt, output, n=3, stdev=0.3, seed=7, absolute=absolute)
        torch.testing.assert_close(r.matrix[i, :len(output), :len(prompt)], ref)
    plain = ak.explain(lm, PROMPTS, ak.Continuation(OUTPUTS), method="saliency", tokenizer=tok)
    zero = ak.explain(lm, PROMPTS, ak.Continuation(OUTPUTS), method="smoothgrad", tokenizer=tok,
                      n_samples=2, stdev=0.0, abs=absolute)
    torch.testing.assert_close(zero.matrix, plain.matrix)  # no noise: saliency


def test_classifier_gradients_equal_autograd(bert):
    tok, clf = bert
    texts = ["the movie was good", "bad film"]
    sg = ak.explain(clf, texts, 2, method="smoothgrad", tokenizer=tok, n_samples=2, stdev=0.2, seed=3)
    ixg = ak.explain(clf, texts, 2, method="input_x_gradient", tokenizer=tok)
    for i, text in enumerate(texts):
        row = tok([text], return_tensors="pt")["input_ids"]
        e = clf.get_input_embeddings()(row).detach()
        noise = torch.randn((2, *e.shape[1:]), generator=torch.Generator().manual_seed(3)).double()
        noise = noise * 0.2 * e[0].std(correction=0)
        norms, grads = [], []
        for j in range(3):
            x = (e if j == 2 else e + noise[j]).clone().requires_grad_()
            (g,) = torch.autograd.grad(clf(inputs_embeds=x).logits[0, 2], x)
            (grads if j == 2 else norms).append(g[0] if j == 2 else g[0].norm(dim=-1))
        n = row.shape[1]
        torch.testing.assert_close(sg.values[i, :n], torch.stack(norms).mean(0))
        torch.testing.assert_close(ixg.values[i, :n], (grads[0] * e[0]).sum(-1))


def test_batched_equals_one_text_at_a_time(tok, lm):
    texts = ["the cat sat on the mat", "a dog", "the red bird was very good"]
    target = ak.Continuation(["on", "ran under", "not"])
    for method, opts in [("smoothgrad", {"n_samples": 3, "seed": 1}),
                         ("smoothgrad", {"n_samples": 3, "seed": 1, "abs": False, "internal_batch_size": 2}),
                         ("saliency", {}), ("input_x_gradient", {})]:
        whole = ak.explain(lm, texts, target, method=method, tokenizer=tok, **opts)
        chunked = ak.explain(lm, texts, target, method=method, tokenizer=tok, batch_size=1, **opts)
        torch.testing.assert_close(whole.matrix, chunked.matrix)
        for i, text in enumerate(texts):
            one = ak.explain(lm, [text], ak.Continuation([target.continuation[i]]), method=method,
                             tokenizer=tok, **opts)
            n_out, n_in = one.matrix.shape[1:]
            torch.testing.assert_close(whole.matrix[i, :n_out, :n_in], one.matrix[0])


@pytest.mark.parametrize("option, value, words", [
    ("n_samples", 0, "n_samples"), ("stdev", -0.1, "stdev"), ("seed", -1, "seed"),
    ("internal_batch_size", 0, "internal_batch_size"), ("take_max", True, "take_max")])
def test_bad_smoothgrad_options_are_named_and_leave_the_model(tok, option, value, words):
    model = tiny_gpt2(tok)
    with assert_model_untouched(model), pytest.raises(InvalidOptionError, match=words):
        ak.explain(model, PROMPTS, method="smoothgrad", tokenizer=tok, **{option: value})
