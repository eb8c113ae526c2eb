"""``attribkit bench --task text``: the keyword texts (the evidence is the keyword's token),
and a quick run of the text bench on a briefly trained model."""

from __future__ import annotations

import json

import numpy as np
import pytest

import attribkit as ak
from attribkit.bench.config import BenchConfig
from attribkit.bench.runner import run_bench
from attribkit.bench.tasks import get_task, task_names
from attribkit.bench.text_task import DISTRACTORS, KEYWORDS, TextTrainConfig, make_texts, tokenizer
from attribkit.errors import InvalidOptionError

ALL_KEYWORDS = {w for words in KEYWORDS for w in words}


def test_the_evidence_is_the_keyword_of_the_label():
    data = make_texts(200, seed=5)
    tok = tokenizer()
    assert data.images.shape == data.evidence.shape == data.mask.shape
    for i, text in enumerate(data.texts):
        words = text.split()
        assert 6 <= len(words) <= 24
        keywords = [w for w in words if w in ALL_KEYWORDS]
        assert len(keywords) == 1 and keywords[0] in KEYWORDS[data.labels[i]]
        assert all(w in DISTRACTORS for w in words if w not in ALL_KEYWORDS)
        tokens = tok.convert_ids_to_tokens(data.images[i][data.mask[i]].tolist())
        assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens[1:-1] == words
        (where,) = np.flatnonzero(data.evidence[i])
        assert where == data.keyword_index[i] and tokens[where] == keywords[0]
    assert set(data.labels.tolist()) == {0, 1, 2}
    assert len({t.split().index(k) for t in data.texts for k in t.split() if k in ALL_KEYWORDS}) > 15


def test_texts_are_reproducible_and_blank_ones_have_no_evidence():
    a, b = make_texts(50, seed=1, blank=0.5), make_texts(50, seed=1, blank=0.5)
    assert a.texts == b.texts and np.array_equal(a.evidence, b.evidence)
    blank = a.keyword_index < 0
    assert 10 < blank.sum() < 40
    assert not a.evidence[blank].any() and a.evidence[~blank].sum(1).tolist() == [1] * int((~blank).sum())
    assert all(not set(t.split()) & ALL_KEYWORDS for t, z in zip(a.texts, blank) if z)
    assert make_texts(5, seed=2).texts != a.texts[:5]
    with pytest.raises(ValueError, match="min_words"):
        make_texts(3, min_words=5, max_words=4)


def test_the_evidence_lines_up_with_the_token_attribution():
    data = make_texts(4, seed=3)
    from attribkit.text.testing import tiny_bert_classifier

    model = tiny_bert_classifier(tokenizer(), classes=3)
    res = ak.explain(model, data.texts, data.labels.tolist(), method="random", tokenizer=tokenizer())
    assert res.values.shape == data.evidence.shape
    for i in range(4):
        assert res.tokens[i][data.keyword_index[i]] in ALL_KEYWORDS


@pytest.fixture
def small_task(monkeypatch, tmp_path):
    """The text task with a briefly trained model, cached under tmp_path."""
    import attribkit.bench.tasks.text as text_task

    monkeypatch.setenv("ATTRIBKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(text_task, "TASK", text_task.TextTask(
        config=TextTrainConfig(n_train=128, n_test=32, epochs=1, hidden=16, max_words=10)))
    return text_task.TASK


def test_a_quick_run_scores_every_token_metric_and_resumes(small_task, tmp_path):
    assert "text" in task_names() and get_task("text") is small_task
    out = tmp_path / "run"
    config = BenchConfig(out=out, task="text", methods=["saliency"], n_images=6)
    records = run_bench(config, progress=False, log=lambda s: None)
    names = {m.name for m in ak.metrics() if "tokens" in m.needs}
    assert len(names) == 6
    assert {(r["method"], r["metric"]) for r in records} == {(m, k) for m in ("saliency", "random") for k in names}
    for r in records:
        assert "error" not in r, r
        assert len(r["scores"]) == 6 and r["n"] <= 6
        finite = [s for s in r["scores"] if s is not None]
        assert r["mean"] == pytest.approx(np.mean(finite))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"saliency", "random"} and set(summary["random"]) == names
    report = (out / "report.md").read_text()
    assert "token_pointing_game ↑" in report and "eraser_sufficiency ↓" in report
    assert "images/s" not in report  # nothing is timed: no empty speed columns
    assert "[CLS]" in (out / "texts.html").read_text()
    lines = (out / "results.jsonl").read_text().count("\n")
    run_bench(config, progress=False, log=lambda s: None)  # resumed: nothing recomputed
    assert (out / "results.jsonl").read_text().count("\n") == lines


def test_the_text_bench_takes_token_metrics_only(small_task, tmp_path):
    config = BenchConfig(out=tmp_path / "run", task="text", metrics=["deletion_auc"], n_images=4)
    with pytest.raises(InvalidOptionError, match="deletion_auc score images"):
        run_bench(config, progress=False, log=lambda s: None)
