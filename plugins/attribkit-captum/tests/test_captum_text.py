"""Captum's methods on text through the plugin: each equals Captum called directly here
(LLMAttribution / LLMGradientAttribution with TextTokenInput, or the class on a presence
vector / on token ids), on tiny GPT-2, LLaMA and BERT models."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.errors import InvalidOptionError

pytest.importorskip("transformers")
captum_attr = pytest.importorskip("captum.attr")

from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, tiny_llama, word_tokenizer  # noqa: E402

PROMPT, TARGET = "the cat sat on the mat", "on the rug"
CLOSE = {"atol": 1e-5, "rtol": 1e-4}


@pytest.fixture(scope="module")
def tok():
    return word_tokenizer()


@pytest.fixture(scope="module")
def lms(tok):
    return {"gpt2": tiny_gpt2(tok), "llama": tiny_llama(tok)}


@pytest.fixture(scope="module")
def cls_tok():
    return word_tokenizer(cls_sep=True)


def seed_all(seed=0):
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def explain(model, tok, method, prompts=(PROMPT,), target=TARGET, **options):
    return ak.explain(model, list(prompts), ak.Continuation(target), method=method, tokenizer=tok, **options)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_integrated_gradients_equals_llm_gradient_attribution(lms, tok, arch):
    model = lms[arch]
    lig = captum_attr.LayerIntegratedGradients(model, model.get_input_embeddings())
    ref = captum_attr.LLMGradientAttribution(lig, tok).attribute(
        captum_attr.TextTokenInput(PROMPT, tok, baselines=1), target=TARGET, n_steps=8)
    result = explain(model, tok, "captum.integrated_gradients", n_steps=8, baseline=1)
    n = ref.token_attr.shape[1]
    torch.testing.assert_close(result.matrix[0, :, :n], ref.token_attr.float(), **CLOSE)
    torch.testing.assert_close(result.values[0, :n], ref.seq_attr.float(), **CLOSE)
    assert result.values.abs().sum() > 0


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_input_x_gradient_equals_llm_gradient_attribution(lms, tok, arch):
    model = lms[arch]
    gxa = captum_attr.LayerGradientXActivation(model, model.get_input_embeddings())
    ref = captum_attr.LLMGradientAttribution(gxa, tok).attribute(
        captum_attr.TextTokenInput(PROMPT, tok), target=TARGET)
    result = explain(model, tok, "captum.input_x_gradient")
    torch.testing.assert_close(result.matrix[0, :, :ref.token_attr.shape[1]], ref.token_attr.float(), **CLOSE)


def test_saliency_equals_autograd_batched(lms, tok):
    model = lms["llama"]
    prompts, targets = ["the cat sat on the mat", "a dog"], ["on the", "ran"]
    result = explain(model, tok, "captum.saliency", prompts, targets)
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        p, c = tok(prompt)["input_ids"], tok(target, add_special_tokens=False)["input_ids"]
        for j, t in enumerate(c):
            embeds = model.get_input_embeddings()(torch.tensor([p + c])).detach().requires_grad_()
            logp = model(inputs_embeds=embeds).logits[0, len(p) + j - 1].log_softmax(-1)[t]
            (grad,) = torch.autograd.grad(logp, embeds)
            torch.testing.assert_close(result.matrix[i, j, :len(p)], grad[0, :len(p)].abs().sum(-1), **CLOSE)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_feature_ablation_equals_llm_attribution(lms, tok, arch):
    model = lms[arch]
    ref = captum_attr.LLMAttribution(captum_attr.FeatureAblation(model), tok).attribute(
        captum_attr.TextTokenInput(PROMPT, tok, baselines=0), target=TARGET, forward_in_tokens=False)
    result = explain(model, tok, "captum.feature_ablation", [PROMPT, "a dog ran"], [TARGET, "on"])
    torch.testing.assert_close(result.matrix[0, :, :ref.token_attr.shape[1]], ref.token_attr.float(), **CLOSE)


def test_shapley_value_sampling_equals_llm_attribution_per_text(lms, tok):
    model = lms["gpt2"]
    prompts, targets = ["a dog ran", "the cat sat on"], ["on the", "the mat"]
    result = explain(model, tok, "captum.shapley_value_sampling", prompts, targets, n_samples=3, seed=7)
    llm = captum_attr.LLMAttribution(captum_attr.ShapleyValueSampling(model), tok)
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        seed_all(7)
        ref = llm.attribute(captum_attr.TextTokenInput(prompt, tok, baselines=0), target=target,
                            forward_in_tokens=False, n_samples=3)
        torch.testing.assert_close(result.matrix[i, :, :ref.token_attr.shape[1]], ref.token_attr.float(), **CLOSE)


@pytest.mark.parametrize("method,cls", [("captum.kernel_shap", "KernelShap"), ("captum.lime", "Lime")])
def test_kernel_shap_and_lime_equal_llm_attribution(lms, tok, method, cls):
    model = lms["llama"]
    options = {}
    if cls == "Lime":  # plain least squares: the default Lasso zeroes these tiny effects
        from captum._utils.models.linear_model import SkLearnLinearRegression
        options = {"interpretable_model": SkLearnLinearRegression()}
    llm = captum_attr.LLMAttribution(getattr(captum_attr, cls)(model, **options), tok)
    seed_all(3)
    ref = llm.attribute(captum_attr.TextTokenInput(PROMPT, tok, baselines=2), target="on",
                        forward_in_tokens=False, n_samples=20)
    result = explain(model, tok, method, target="on", n_samples=20, seed=3, baseline=2, **options)
    torch.testing.assert_close(result.values[0, :ref.seq_attr.shape[0]], ref.seq_attr.float(), **CLOSE)
    assert result.values.abs().sum() > 0


def presence_forward(model, inp):
    return lambda x: model(inp.to_model_input(x.long())).logits


def test_occlusion_on_a_classifier_equals_captum(cls_tok):
    model = tiny_bert_classifier(cls_tok, classes=3)
    text = "the movie was not very good"
    inp = captum_attr.TextTokenInput(text, cls_tok, baselines=0)
    ref = captum_attr.Occlusion(presence_forward(model, inp)).attribute(
        inp.to_tensor().float(), sliding_window_shapes=(3,), strides=2, baselines=0, target=1)
    result = ak.explain(model, [text], 1, method="captum.occlusion", tokenizer=cls_tok,
                        sliding_window_shapes=3, strides=2)
    torch.testing.assert_close(result.values, ref.float(), **CLOSE)


def test_feature_ablation_on_a_classifier_equals_captum_on_ids(cls_tok):
    model = tiny_bert_classifier(cls_tok, classes=3)
    texts = ["the movie was very good", "bad"]
    ids = cls_tok(texts[0], return_tensors="pt")["input_ids"]
    ref = captum_attr.FeatureAblation(lambda x: model(x).logits).attribute(ids, baselines=0, target=2)
    result = ak.explain(model, texts, 2, method="captum.feature_ablation", tokenizer=cls_tok)
    torch.testing.assert_close(result.values[:1], ref.float(), **CLOSE)


@pytest.mark.parametrize("method,options,words", [
    ("captum.integrated_gradients", {"n_steps": 0}, "n_steps"),
    ("captum.feature_ablation", {"baseline": 10_000}, "out of range"),
    ("captum.feature_ablation", {"feature_mask": None}, "no option 'feature_mask'"),
    ("captum.deeplift", {}, "no kernel for text"),
])
def test_bad_options_named(lms, tok, method, options, words):
    model = lms["gpt2"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InvalidOptionError, match=words):
        explain(model, tok, method, **options)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not model.get_input_embeddings()._forward_hooks
