"""The text core: inputs, targets (classes, continuations, greedy), the runner's result,
the embedding layer, errors before any work, the untouched model."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

import attribkit as ak  # noqa: E402
from attribkit.errors import GradientModeError, InputError, InvalidOptionError, LayerError, TargetError  # noqa: E402
from attribkit.testing import assert_model_untouched  # noqa: E402
from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, tiny_llama, word_tokenizer  # noqa: E402

TEXTS = ["the cat sat on the mat", "a dog ran", "the red bird"]


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module")
def gpt2(tok):
    return tiny_gpt2(tok)


@pytest.fixture(scope="module")
def bert():
    tok = word_tokenizer(cls_sep=True)
    return tok, tiny_bert_classifier(tok)


def ids_of(tok, text):
    return tok([text], return_tensors="pt")["input_ids"]


def autograd_ixg(model, ids, position, token):
    """input x gradient of log p(token | ids[:position + 1]) on the embedding output, by hand."""
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
    logp = model(inputs_embeds=embeds).logits[0, position].log_softmax(-1)[token]
    (grad,) = torch.autograd.grad(logp, embeds)
    return (grad * embeds).sum(-1)[0]


def test_strings_ids_and_left_padding_give_the_same_rows(tok, gpt2):
    by_text = ak.explain(gpt2, TEXTS, 5, method="input_x_gradient", tokenizer=tok)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    by_ids = ak.explain(gpt2, dict(enc), 5, method="input_x_gradient", tokenizer=tok)
    tok.padding_side = "left"
    try:
        left = tok(TEXTS, padding=True, return_tensors="pt")
    finally:
        tok.padding_side = "right"
    assert left["attention_mask"][1, 0] == 0  # really left-padded
    by_left = ak.explain(gpt2, dict(left), 5, method="input_x_gradient", tokenizer=tok)
    assert by_text.tokens == by_ids.tokens == by_left.tokens
    torch.testing.assert_close(by_text.values, by_ids.values)
    torch.testing.assert_close(by_text.values, by_left.values)
    assert by_text.mask.sum(1).tolist() == [6, 3, 3]


def test_ids_without_a_tokenizer_name_tokens_by_id(gpt2):
    ids = torch.tensor([[5, 6, 7]])
    r = ak.explain(gpt2, ids, method="saliency")
    assert r.tokens == [["#5", "#6", "#7"]] and r.values.shape == (1, 3)


def test_continuation_rows_equal_autograd_per_output_token(tok, gpt2):
    r = ak.explain(gpt2, TEXTS[:2], ak.Continuation(["on the rug", "under"]), method="input_x_gradient",
                   tokenizer=tok)
    assert r.matrix.shape == (2, 3, 6) and r.output_tokens == [["on", "the", "rug"], ["under"]]
    for i, (prompt, cont) in enumerate([(TEXTS[0], "on the rug"), (TEXTS[1], "under")]):
        full = ids_of(tok, f"{prompt} {cont}")
        n = ids_of(tok, prompt).shape[1]
        for j in range(full.shape[1] - n):
            expected = autograd_ixg(gpt2, full, n + j - 1, full[0, n + j])[:n]
            torch.testing.assert_close(r.matrix[i, j, :n], expected, atol=1e-6, rtol=1e-5)
            assert (r.matrix[i, j, n:] == 0).all()
        assert (r.matrix[1, 1:] == 0).all()  # the shorter continuation has no further rows
    torch.testing.assert_close(r.values, r.matrix.sum(1))


def test_int_target_on_a_causal_lm_is_the_next_token(tok, gpt2):
    r = ak.explain(gpt2, [TEXTS[1]], 7, method="input_x_gradient", tokenizer=tok)
    ids = ids_of(tok, TEXTS[1])
    torch.testing.assert_close(r.values[0], autograd_ixg(gpt2, ids, 2, 7), atol=1e-6, rtol=1e-5)
    assert r.meta["continuation"] == [[7]]


def test_greedy_continuation_equals_generate(tok, gpt2):
    r = ak.explain(gpt2, TEXTS, method="saliency", tokenizer=tok, max_new_tokens=3)
    for i, text in enumerate(TEXTS):
        ids = ids_of(tok, text)
        out = gpt2.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False,
                            pad_token_id=tok.pad_token_id, eos_token_id=None)
        assert r.meta["continuation"][i] == out[0, ids.shape[1]:].tolist()


def test_classifier_top_class_and_special_tokens(bert):
    tok, model = bert
    r = ak.explain(model, TEXTS, method="saliency", tokenizer=tok)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        top = model(**enc).logits.argmax(1)
    assert r.target.tolist() == top.tolist() and r.matrix is None
    assert r.tokens[1] == ["[CLS]", "a", "dog", "ran", "[SEP]"]
    assert r.special[1].tolist()[:5] == [True, False, False, False, True]
    skipped = ak.explain(model, TEXTS, method="saliency", tokenizer=tok, skip_special_tokens=True)
    assert (skipped.values[skipped.special] == 0).all()
    keep = skipped.mask
    torch.testing.assert_close(skipped.values[keep], r.values[keep])
    assert not keep[r.special].any()


def test_classifier_saliency_equals_the_gradient_norm_by_hand(bert):
    tok, model = bert
    r = ak.explain(model, TEXTS, 2, method="saliency", tokenizer=tok)
    for i, text in enumerate(TEXTS):
        ids = ids_of(tok, text)
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
        (grad,) = torch.autograd.grad(model(inputs_embeds=embeds).logits[0, 2], embeds)
        torch.testing.assert_close(r.values[i, :ids.shape[1]], grad.norm(dim=-1)[0], atol=1e-7, rtol=1e-5)
        assert (r.values[i, ids.shape[1]:] == 0).all()


class BagOfEmbeddings(nn.Module):
    """Any module mapping ids to scores: mean of token and position embeddings, a linear head."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.tokens = nn.Embedding(40, 8)
        self.positions = nn.Embedding(16, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, ids):
        x = self.tokens(ids) + self.positions(torch.arange(ids.shape[1]).expand_as(ids))
        return self.head(x.mean(1))


def test_a_plain_module_uses_its_largest_embedding():
    model = BagOfEmbeddings()
    ids = torch.tensor([[3, 4, 5, 6]])
    r = ak.explain(model, ids, 1, method="input_x_gradient")
    assert r.meta["embedding"] == "tokens"
    expected = (model.tokens(ids)[0] * model.head.weight[1] / 4).sum(-1)  # linear: by hand
    torch.testing.assert_close(r.values[0], expected.detach(), atol=1e-6, rtol=1e-5)
    other = ak.explain(model, ids, 1, method="input_x_gradient", embedding="positions")
    assert other.meta["embedding"] == "positions"


def test_errors_name_the_problem_and_leave_the_model(tok, gpt2, bert):
    btok, clf = bert
    with assert_model_untouched(gpt2):
        with pytest.raises(InputError, match="need a tokenizer"):
            ak.explain(gpt2, TEXTS, method="saliency")
        with pytest.raises(InvalidOptionError, match="no kernel for text.*text methods: .*saliency"):
            ak.explain(gpt2, TEXTS, method="gradcam", tokenizer=tok)
        with pytest.raises(InvalidOptionError, match="take no layer"):
            ak.explain(gpt2, TEXTS, method="saliency", tokenizer=tok, layer="transformer.h.0")
        with pytest.raises(TargetError, match="out of range"):
            ak.explain(gpt2, TEXTS, 10_000, method="saliency", tokenizer=tok)
        with pytest.raises(LayerError, match="no module 'nope'"):
            ak.explain(gpt2, TEXTS, method="saliency", tokenizer=tok, embedding="nope")
        with pytest.raises(InputError, match="max_new_tokens"):
            ak.explain(gpt2, TEXTS, method="saliency", tokenizer=tok, max_new_tokens=0)
        with pytest.raises(GradientModeError), torch.inference_mode():
            ak.explain(gpt2, TEXTS, method="saliency", tokenizer=tok)
        r = ak.explain(gpt2, TEXTS, ak.Continuation("the mat"), method="saliency", tokenizer=tok)
        assert r.output_tokens[0] == ["the", "mat"]
    with assert_model_untouched(clf):
        with pytest.raises(TargetError, match="causal LM"):
            ak.explain(clf, TEXTS, "the mat", method="saliency", tokenizer=btok)
        with pytest.raises(TargetError, match="out of range: the model has 3 classes"):
            ak.explain(clf, TEXTS, 3, method="saliency", tokenizer=btok)
        with pytest.raises(InputError, match="integer"):
            ak.explain(clf, {"input_ids": torch.zeros(2, 3)}, method="saliency", tokenizer=btok)


def test_llama_batched_equals_one_text_at_a_time(tok):
    model = tiny_llama(tok)
    batched = ak.explain(model, TEXTS, ak.Continuation("on the mat"), method="input_x_gradient", tokenizer=tok)
    for i, text in enumerate(TEXTS):
        one = ak.explain(model, [text], ak.Continuation("on the mat"), method="input_x_gradient", tokenizer=tok)
        n = one.values.shape[1]
        torch.testing.assert_close(batched.matrix[i, :, :n], one.matrix[0], atol=1e-6, rtol=1e-5)


def test_chunks_and_random_baseline_do_not_depend_on_the_batch(tok, gpt2):
    whole = ak.explain(gpt2, TEXTS, 3, method="input_x_gradient", tokenizer=tok)
    chunked = ak.explain(gpt2, TEXTS, 3, method="input_x_gradient", tokenizer=tok, batch_size=1)
    torch.testing.assert_close(whole.values, chunked.values)
    a = ak.explain(gpt2, TEXTS, 3, method="random", tokenizer=tok)
    b = ak.explain(gpt2, TEXTS[1:], 3, method="random", tokenizer=tok)
    torch.testing.assert_close(a.values[1:, :3], b.values[:, :3])
    assert (a.values[1, 3:] == 0).all() and (a.values[0] > 0).all()


def test_the_text_entry_imports_no_torch():
    code = ("import sys, attribkit.text as t; from attribkit.text.detect import is_text_input;"
            "assert is_text_input(['a b']) and not is_text_input([[1.0]]);"
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_calls_from_two_threads_on_one_model_see_only_their_own_embeddings(tok, gpt2):
    from concurrent.futures import ThreadPoolExecutor

    jobs = [(TEXTS[i % 3], i % 5 + 3) for i in range(8)]
    alone = [ak.explain(gpt2, [text], target, method="input_x_gradient", tokenizer=tok).values for text, target in jobs]
    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(lambda job: ak.explain(gpt2, [job[0]], job[1], method="input_x_gradient",
                                                        tokenizer=tok).values, jobs))
    for a, b in zip(alone, together):
        torch.testing.assert_close(a, b)


def test_one_string_is_one_text(tok, gpt2):
    r = ak.explain(gpt2, "the cat sat", method="saliency", tokenizer=tok)
    assert r.tokens == [["the", "cat", "sat"]] and r.texts == ["the cat sat"]


@pytest.mark.parametrize("method, options", [
    ("integrated_gradients", {"n_steps": 0}), ("integrated_gradients", {"baseline": 10**6}),
    ("smoothgrad", {"n_samples": 0}), ("occlusion", {"span": 0}), ("occlusion", {"skip_tokens": "a"}),
    ("attention_rollout", {"row": "middle"}), ("raw_attention", {"head_fusion": "median"}),
    ("generic_attention", {"row": "middle"})])
def test_bad_option_values_fail_before_the_model_runs(tok, gpt2, method, options):
    calls = []
    handle = gpt2.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with pytest.raises(InvalidOptionError, match=next(iter(options))):
            ak.explain(gpt2, ["the cat sat"], 3, method=method, tokenizer=tok, **options)
    finally:
        handle.remove()
    assert calls == []
