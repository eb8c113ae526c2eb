"""Token metrics (attribkit.evaluation.tokens) through ak.evaluate: hand-computed values on a
bag-of-words model, a brute-force loop (one forward per perturbed text) on a tiny BERT,
the batching, undefined scores and the named errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import AttribkitError, InputError, InvalidOptionError, MetricWarning, TargetError
from attribkit.testing import assert_model_untouched
from attribkit.text.result import TokenAttribution

FAITH = ["eraser_comprehensiveness", "eraser_sufficiency", "token_deletion_aopc", "token_insertion_aopc"]


class BagOfWords(nn.Module):
    """logits = sum over the real tokens of W[id]: every score is a sum to compute by hand."""

    def __init__(self, weights: torch.Tensor) -> None:
        super().__init__()
        self.emb = nn.Embedding(*weights.shape)
        self.emb.weight.data.copy_(weights)

    def forward(self, input_ids, attention_mask=None):
        e = self.emb(input_ids)
        if attention_mask is not None:
            e = e * attention_mask[..., None].to(e.dtype)
        return e.sum(1)


def result(values, ids, mask=None, target=0):
    values = torch.as_tensor(values, dtype=torch.float32)
    mask = torch.ones_like(values, dtype=torch.bool) if mask is None else mask
    return TokenAttribution(values=values * mask, method="hand", target=torch.full((len(values),), target),
                            tokens=[[f"#{int(i)}" for i in row[m]] for row, m in zip(ids, mask)],
                            mask=mask, special=torch.zeros_like(mask))


@pytest.fixture
def hand():
    # class 0 weights: pad (id 0, the baseline token) -1, id t weighs t; class 1: 0
    weights = torch.zeros(6, 2)
    weights[:, 0] = torch.tensor([-1.0, 1, 2, 3, 4, 5])
    ids = torch.tensor([[1, 2, 3, 4]])
    # values rank position 1 (w 2), 2 (w 3), 3 (w 4), 0 (w 1)
    return BagOfWords(weights), {"input_ids": ids}, result([[0.1, 0.9, 0.5, 0.3]], ids)


def test_hand_computed_values(hand):
    model, inputs, res = hand
    logit = {"score": "logit"}
    out = ak.evaluate(model, inputs, res, metrics=["token_pointing_game", "token_rank_accuracy", *FAITH],
                      evidence=[[1, 3]], options={"eraser_comprehensiveness": {"bins": (0.25, 0.5), **logit},
                                                  "eraser_sufficiency": {"bins": (0.25, 0.5), **logit},
                                                  "token_deletion_aopc": logit, "token_insertion_aopc": logit})
    got = {k: float(v.scores[0]) for k, v in out.items()}
    assert got["token_pointing_game"] == 1.0  # position 1 is the top token
    assert got["token_rank_accuracy"] == 0.5  # top 2 = positions 1, 2; evidence 1, 3
    # f(x) = 10; deleting the top 1 (w 2) and top 2 (w 2 + 3): drops 2 and 5
    assert got["eraser_comprehensiveness"] == pytest.approx((2 + 5) / 2)
    # keeping only them: f = 2 and 5, drops 8 and 5
    assert got["eraser_sufficiency"] == pytest.approx((8 + 5) / 2)
    # replaced by the pad token (w -1), k = 0..4: f = 10, 7, 3, -2, -4
    assert got["token_deletion_aopc"] == pytest.approx((0 + 3 + 7 + 12 + 14) / 5)
    # only the top k, the others pad: f = -4, -1, 3, 8, 10, gains over f(x^0) = -4
    assert got["token_insertion_aopc"] == pytest.approx((0 + 3 + 7 + 12 + 14) / 5)
    miss = ak.evaluate(model, inputs, res, metrics=["token_pointing_game"], evidence=[[2]])
    assert float(miss["token_pointing_game"].scores[0]) == 0.0


def test_replacement_and_steps_by_hand(hand):
    model, inputs, res = hand
    out = ak.evaluate(model, inputs, res, metrics=["eraser_comprehensiveness", "token_deletion_aopc"],
                      options={"eraser_comprehensiveness": {"bins": (0.5,), "removal": "replace", "score": "logit"},
                               "token_deletion_aopc": {"steps": 2, "score": "logit"}})
    # top 2 replaced by the pad (w -1): f = 10 - 5 - 2 = 3, drop 7
    assert float(out["eraser_comprehensiveness"].scores[0]) == pytest.approx(7)
    # steps=2: k = 0, 2, 4: drops 0, 7, 14
    assert float(out["token_deletion_aopc"].scores[0]) == pytest.approx(7)


def test_probability_score_by_hand(hand):
    model, inputs, res = hand
    out = ak.evaluate(model, inputs, res, metrics=["eraser_comprehensiveness"],
                      options={"eraser_comprehensiveness": {"bins": (0.25,)}})
    p = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731 - two classes, class 1's logit 0
    assert float(out["eraser_comprehensiveness"].scores[0]) == pytest.approx(p(10) - p(8), rel=1e-3)  # float32 logits


# ------------------------------------------------------------------ brute force
def _brute(model, ids, mask, special, values, target, name, options):
    """One forward per perturbed text, the order by a Python sort."""
    def f(tokens):
        x = torch.tensor([tokens])
        with torch.no_grad():
            logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0]
        return float(logits[target] if options.get("score") == "logit" else logits.softmax(0)[target])

    row = ids[mask].tolist()
    cand = [t for t in range(len(row)) if not special[t]]
    order = sorted(cand, key=lambda t: (-float(values[t]), t))
    n = len(cand)
    full = f(row)
    if name.startswith("eraser"):
        removal = options.get("removal", "delete")
        drops = []
        for p in options.get("bins", (0.01, 0.05, 0.1, 0.2, 0.5)):
            top = set(order[:max(1, math.ceil(n * p))])
            gone = top if name == "eraser_comprehensiveness" else set(cand) - top
            text = ([tok for t, tok in enumerate(row) if t not in gone] if removal == "delete"
                    else [0 if t in gone else tok for t, tok in enumerate(row)])
            drops.append(full - f(text or [0]))
        return sum(drops) / len(drops)
    curve = []
    for k in range(n + 1):
        top = set(order[:k])
        if name == "token_deletion_aopc":
            curve.append(full - f([0 if t in top else tok for t, tok in enumerate(row)]))
        else:
            curve.append(f([tok if t in top or t not in cand else 0 for t, tok in enumerate(row)]))
    if name == "token_insertion_aopc":
        curve = [c - curve[0] for c in curve]
    return sum(curve) / len(curve)


@pytest.mark.parametrize("options", [{}, {"removal": "replace", "score": "logit"}, {"bins": (0.3, 1.0)}])
def test_batched_equals_a_brute_force_loop(options):
    from attribkit.text.testing import tiny_bert_classifier, word_tokenizer

    tok = word_tokenizer(cls_sep=True)
    model = tiny_bert_classifier(tok, seed=3)
    texts = ["the cat sat on the mat", "a bad film", "the plot was not very good at all",
             "dog"]
    res = ak.explain(model, texts, [0, 1, 2, 1], method="random", tokenizer=tok, seed=4)
    names = FAITH if options.get("removal") != "replace" else FAITH[:2]
    opts = {name: {k: v for k, v in options.items() if name.startswith("eraser") or k == "score"}
            for name in names}
    with assert_model_untouched(model):
        out = ak.evaluate(model, texts, res, metrics=names, tokenizer=tok, options=opts, batch_size=7)
    for name in names:
        for i in range(len(texts)):
            want = _brute(model, torch.as_tensor(tok(texts[i])["input_ids"]), torch.ones(
                len(tok(texts[i])["input_ids"]), dtype=torch.bool), res.special[i][res.mask[i]],
                res.values[i][res.mask[i]], int(res.target[i]), name, opts[name])
            assert float(out[name].scores[i]) == pytest.approx(want, abs=1e-5), (name, i)


def test_many_perturbed_texts_per_forward(hand):
    model, inputs, res = hand
    calls = []
    model.register_forward_hook(lambda m, a, o: calls.append(a[0].shape[0]))
    ids = torch.randint(1, 6, (5, 4), generator=torch.Generator().manual_seed(0))
    ak.evaluate(model, {"input_ids": ids}, result(torch.rand(5, 4), ids), metrics=["token_deletion_aopc"],
                batch_size=1000)
    assert calls == [1, 25]  # the class check's one text, then 5 texts x 5 steps in one forward


# ------------------------------------------------------------------ undefined scores, errors
def test_constant_values_and_empty_evidence_are_nan_with_a_warning(hand):
    model, _, _ = hand
    ids = torch.tensor([[1, 2, 3], [3, 4, 5]])
    res = result([[0.2, 0.2, 0.2], [0.1, 0.5, 0.3]], ids)
    with pytest.warns(MetricWarning, match=r"'token_pointing_game' is undefined \(NaN\) for text\(s\) 0, 1"):
        out = ak.evaluate(model, {"input_ids": ids}, res, metrics=["token_pointing_game"], evidence=[[0], []])
    assert out["token_pointing_game"].scores.isnan().all()
    with pytest.warns(MetricWarning, match="constant"):
        out = ak.evaluate(model, {"input_ids": ids}, res, metrics=["token_deletion_aopc"])
    assert math.isnan(out["token_deletion_aopc"].scores[0]) and not math.isnan(out["token_deletion_aopc"].scores[1])


def test_named_errors_before_any_forward(hand):
    model, inputs, res = hand
    calls = []
    model.register_forward_hook(lambda *a: calls.append(1))
    cases = [
        (InvalidOptionError, "score image maps", dict(metrics=["deletion_auc"])),
        (InvalidOptionError, "needs the evidence tokens", dict(metrics=["token_pointing_game"])),
        (InputError, r"evidence must be \(B, T\) = \(1, 4\)", dict(metrics=["token_pointing_game"],
                                                                  evidence=torch.ones(1, 3, dtype=torch.bool))),
        (InputError, "outside its 4 tokens", dict(metrics=["token_pointing_game"], evidence=[[7]])),
        (TargetError, "2 targets for 1 texts", dict(metrics=["token_deletion_aopc"], targets=[0, 1])),
    ]
    for error, match, kwargs in cases:
        with pytest.raises(error, match=match):
            ak.evaluate(model, inputs, res, **kwargs)
    with pytest.raises(InputError, match=r"values are \(1, 4\) but the inputs give \(1, 3\)"):
        ak.evaluate(model, {"input_ids": torch.tensor([[1, 2, 3]])}, res, metrics=["token_deletion_aopc"])
    with pytest.raises(InputError, match="text 0 is not the one explained"):
        ak.evaluate(model, {"input_ids": torch.tensor([[1, 2, 3, 5]])}, res, metrics=["token_deletion_aopc"])
    assert calls == []
    with pytest.raises(InvalidOptionError, match="removal must be one of delete, replace"):
        ak.evaluate(model, inputs, res, metrics=["eraser_sufficiency"],
                    options={"eraser_sufficiency": {"removal": "drop"}})
    with pytest.raises(TargetError, match="target 5 is out of range"):
        ak.evaluate(model, inputs, res, metrics=["token_deletion_aopc"], targets=5)


def test_token_metrics_refuse_image_maps_and_the_order_of_arguments_is_free(hand):
    from attribkit.testing import TinyCNN

    with pytest.raises(InvalidOptionError, match="score token attributions") as err:
        ak.evaluate(TinyCNN().eval(), torch.rand(2, 3, 8, 8), torch.rand(2, 8, 8), [0, 1],
                    metrics=["token_rank_accuracy"], masks=torch.ones(2, 8, 8, dtype=torch.bool))
    assert isinstance(err.value, AttribkitError)
    model, inputs, res = hand
    a = ak.evaluate(model, inputs, res, metrics=["token_deletion_aopc"])
    b = ak.evaluate(model, res, inputs, metrics=["token_deletion_aopc"])
    assert torch.equal(a["token_deletion_aopc"].scores, b["token_deletion_aopc"].scores)


def test_a_continuation_is_refused_by_name():
    from attribkit.text.testing import tiny_gpt2, word_tokenizer

    tok = word_tokenizer()
    lm = tiny_gpt2(tok)
    res = ak.explain(lm, ["the cat sat"], ak.Continuation("on"), method="saliency", tokenizer=tok)
    with pytest.raises(TargetError, match="score a classifier's class.*continuation"):
        ak.evaluate(lm, ["the cat sat"], res, tokenizer=tok, metrics=["token_deletion_aopc"])
