"""occlusion on text: equal to Captum (LLMAttribution(FeatureAblation) with TextTokenInput,
FeatureAblation with a feature mask, Occlusion) and to a brute-force loop."""

from __future__ import annotations

import pytest
import torch

import attribkit as ak
from attribkit.errors import AttribkitError, InvalidOptionError

pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, tiny_llama, word_tokenizer  # noqa: E402

PROMPTS = ["the cat sat on the mat", "a dog ran under the red rug", "good movie"]


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module")
def cls_tok():
    return word_tokenizer(cls_sep=True)


@pytest.fixture(scope="module")
def lms(tok):
    return {"gpt2": tiny_gpt2(tok), "llama": tiny_llama(tok)}


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("baseline", [None, 1])
def test_equals_captum_llm_feature_ablation(lms, tok, arch, baseline):
    model = lms[arch]
    prompt, target = "the cat sat on the mat", "on the red rug"
    token = tok.pad_token_id if baseline is None else baseline
    llm = captum_attr.LLMAttribution(captum_attr.FeatureAblation(model), tok)
    ref = llm.attribute(captum_attr.TextTokenInput(prompt, tok, baselines=token), target=target,
                        forward_in_tokens=False)
    options = {} if baseline is None else {"baseline": baseline}
    result = ak.explain(model, [prompt], ak.Continuation(target), method="occlusion", tokenizer=tok, **options)
    n = ref.token_attr.shape[1]
    torch.testing.assert_close(result.matrix[0, :, :n], ref.token_attr.float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(result.values[0, :n], ref.seq_attr.float(), atol=1e-5, rtol=1e-4)
    assert result.values.abs().sum() > 0


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_spans_equal_captum_feature_mask(lms, tok, arch):
    model = lms[arch]
    prompt, target = "a dog ran under the red rug", "on the mat"
    n = len(tok(prompt)["input_ids"])
    mask = (torch.arange(n) // 3)[None]
    llm = captum_attr.LLMAttribution(captum_attr.FeatureAblation(model), tok)
    ref = llm.attribute(captum_attr.TextTokenInput(prompt, tok, baselines=0), target=target,
                        forward_in_tokens=False, feature_mask=mask)
    result = ak.explain(model, [prompt], ak.Continuation(target), method="occlusion", tokenizer=tok, span=3)
    torch.testing.assert_close(result.matrix[0, :, :n], ref.token_attr.float(), atol=1e-5, rtol=1e-4)
    assert torch.equal(result.values[0, 0], result.values[0, 2])  # one group, one value


def classifier_forward(model, inp):
    """Captum's view of the classifier: interpretable presence (1) / absence (baseline)."""
    return lambda x: model(inp.to_model_input(x.long())).logits


def test_classifier_equals_captum_on_ids(cls_tok):
    model = tiny_bert_classifier(cls_tok, classes=3)
    text = "the movie was very good"
    ids = cls_tok([text], return_tensors="pt")["input_ids"]
    ablation = captum_attr.FeatureAblation(lambda x: model(x).logits)
    ref = ablation.attribute(ids, baselines=cls_tok.pad_token_id, target=2)
    result = ak.explain(model, [text], 2, method="occlusion", tokenizer=cls_tok)
    torch.testing.assert_close(result.values, ref.float(), atol=1e-5, rtol=1e-4)


def test_skip_tokens_and_spans_equal_captum_text_token_input(cls_tok):
    model = tiny_bert_classifier(cls_tok, classes=3)
    text = "the movie was very good not bad"
    skip = [cls_tok.cls_token_id, cls_tok.sep_token_id]
    inp = captum_attr.TextTokenInput(text, cls_tok, baselines=1, skip_tokens=skip)
    mask = (torch.arange(inp.n_itp_features) // 2)[None]
    ref = captum_attr.FeatureAblation(classifier_forward(model, inp)).attribute(
        inp.to_tensor().float(), target=1, feature_mask=mask)
    result = ak.explain(model, [text], 1, method="occlusion", tokenizer=cls_tok, baseline=1, span=2,
                        skip_tokens=skip)
    torch.testing.assert_close(result.values[0, 1:-1], ref[0].float(), atol=1e-5, rtol=1e-4)
    assert result.values[0, 0] == 0 and result.values[0, -1] == 0


@pytest.mark.parametrize("span,stride", [(3, 1), (2, 1), (4, 3)])
def test_sliding_windows_equal_captum_occlusion(cls_tok, span, stride):
    model = tiny_bert_classifier(cls_tok, classes=3)
    text = "the cat sat on the red mat"
    inp = captum_attr.TextTokenInput(text, cls_tok, baselines=0)
    ref = captum_attr.Occlusion(classifier_forward(model, inp)).attribute(
        inp.to_tensor().float(), sliding_window_shapes=(span,), strides=stride, baselines=0, target=0)
    result = ak.explain(model, [text], 0, method="occlusion", tokenizer=cls_tok, span=span, stride=stride)
    torch.testing.assert_close(result.values, ref.float(), atol=1e-5, rtol=1e-4)


def test_brute_force_batch_of_different_lengths(lms, tok):
    model = lms["gpt2"]
    before = state(model)
    targets = ["on the mat", "sat", "film was"]
    result = ak.explain(model, PROMPTS, ak.Continuation(targets), method="occlusion", tokenizer=tok,
                        baseline=3, batch_size=2, forward_batch_size=5)
    for i, (prompt, target) in enumerate(zip(PROMPTS, targets)):
        p = tok(prompt)["input_ids"]
        c = tok(target, add_special_tokens=False)["input_ids"]

        def scores(prompt_ids):
            with torch.no_grad():
                logp = model(torch.tensor([prompt_ids + c])).logits[0].log_softmax(-1)
            return torch.stack([logp[len(p) + j - 1, t] for j, t in enumerate(c)])

        clean = scores(p)
        for t in range(len(p)):
            drop = clean - scores(p[:t] + [3] + p[t + 1:])
            torch.testing.assert_close(result.matrix[i, :len(c), t], drop, atol=1e-5, rtol=1e-4)
        assert torch.all(result.matrix[i, :, len(p):] == 0)
        assert torch.all(result.matrix[i, len(c):] == 0)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not model._forward_hooks and not model.training


def test_classifier_brute_force_batched(cls_tok):
    model = tiny_bert_classifier(cls_tok, classes=3)
    texts = ["the movie was very good", "bad plot", "not quite a great film but good acting"]
    result = ak.explain(model, texts, [0, 1, 2], method="occlusion", tokenizer=cls_tok)
    for i, text in enumerate(texts):
        ids = cls_tok(text)["input_ids"]
        with torch.no_grad():
            clean = model(torch.tensor([ids])).logits[0, i]
            for t in range(len(ids)):
                occluded = ids[:t] + [cls_tok.pad_token_id] + ids[t + 1:]
                drop = clean - model(torch.tensor([occluded])).logits[0, i]
                torch.testing.assert_close(result.values[i, t], drop, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("options,words", [
    ({"span": 0}, "span"), ({"stride": 0}, "stride"), ({"span": 1.5}, "span"),
    ({"baseline": -1}, "out of range"), ({"baseline": 10_000}, "out of range"),
    ({"baseline": 0.5}, "token id"), ({"skip_tokens": "[CLS]"}, "skip_tokens"),
    ({"forward_batch_size": 0}, "forward_batch_size"), ({"window": 3}, "no option 'window'"),
])
def test_bad_options_named(lms, tok, options, words):
    model = lms["gpt2"]
    before = state(model)
    with pytest.raises(InvalidOptionError, match=words) as info:
        ak.explain(model, ["the cat sat"], "on", method="occlusion", tokenizer=tok, **options)
    assert isinstance(info.value, (AttribkitError, ValueError))
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
