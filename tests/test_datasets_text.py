"""explain_dataset on text: the store's tokens and values against explain and the tokenizer,
continuations, resume after an interruption, integrity, refusals, torchrun."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.datasets.resume import StoreRepairWarning
from attribkit.datasets.store import StoreError
from attribkit.errors import InputError, InvalidOptionError, TargetError
from attribkit.testing import assert_model_untouched
from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, word_tokenizer

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the movie was good", "a bad film", "the cat sat on the mat", "very good acting", "not quite great plot",
         "awful", "the dog ran under the red rug", "a blue bird", "the film was very bad", "good"]
LABELS = [i % 3 for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def bert():
    tok = word_tokenizer(cls_sep=True)
    return tok, tiny_bert_classifier(tok, classes=3)


@pytest.fixture(scope="module")
def gpt():
    tok = word_tokenizer()
    return tok, tiny_gpt2(tok)


def test_a_classifier_store_holds_what_explain_gives_batch_by_batch(tmp_path, bert):
    tok, clf = bert
    data = list(zip(TEXTS, LABELS))
    with assert_model_untouched(clf):
        store = ak.explain_dataset(clf, data, ["saliency", "input_x_gradient"], tmp_path / "run.zarr", batch_size=4,
                                   tokenizer=tok, skip_special_tokens=True, progress=False)
    assert isinstance(store, ak.open_store(tmp_path / "run.zarr").__class__) and store.complete
    assert repr(store).startswith("TextStore(") and store.kind == "class"
    encoded = [tok(t)["input_ids"] for t in TEXTS]
    width = max(map(len, encoded))  # max_length measured over the data
    assert store["saliency"].shape == (10, width) and store.settings["max_length"] == width
    for i, ids in enumerate(encoded):  # the tokenizer's ids and strings, -1 / "" after the text
        assert store.token_ids[i].tolist() == ids + [-1] * (width - len(ids))
        assert store.tokens(i) == tok.convert_ids_to_tokens(ids)
    assert store.labels.tolist() == LABELS and store.texts.tolist() == TEXTS
    with torch.no_grad():  # the model's own top class and logit, computed here
        logits = clf(**tok(TEXTS, return_tensors="pt", padding=True)).logits
    np.testing.assert_array_equal(store.predictions.classes, logits.argmax(1).numpy())
    np.testing.assert_allclose(store.predictions.scores, logits.max(1).values.numpy(), rtol=1e-5, atol=1e-6)
    for start in range(0, 10, 4):
        rows = slice(start, start + 4)
        for method in ("saliency", "input_x_gradient"):
            expected = ak.explain(clf, TEXTS[rows], method=method, tokenizer=tok, skip_special_tokens=True)
            got = store.attribution(method, rows)
            np.testing.assert_array_equal(np.asarray(got.values), expected.values.numpy())
            assert got.tokens == expected.tokens and got.texts == TEXTS[rows]
            np.testing.assert_array_equal(got.mask, expected.mask.numpy())
            np.testing.assert_array_equal(got.special, expected.special.numpy())
            np.testing.assert_array_equal(got.target, expected.target.numpy())
            stored = np.asarray(store[method][rows])  # zero after each text's last token
            assert (stored[:, expected.values.shape[1]:] == 0).all()
    assert store.pairs("saliency", 1)[1][0] == "a"
    assert store.verify().ok


def test_a_continuation_store_holds_the_matrix_and_the_output_tokens(tmp_path, gpt):
    tok, lm = gpt
    prompts, continuations = ["the cat sat on the", "a dog", "the bird was"], ["mat", "ran under the rug", "red"]
    store = ak.explain_dataset(lm, list(zip(prompts, continuations)), "input_x_gradient", tmp_path / "lm.zarr",
                               batch_size=2, tokenizer=tok, progress=False)
    assert store.kind == "continuation" and store.matrix("input_x_gradient").shape == (3, 4, 5)
    assert store.output_tokens(1) == ["ran", "under", "the", "rug"] and store.output_tokens(0) == ["mat"]
    assert store.targets is None and store.predictions is None
    for rows in (slice(0, 2), slice(2, 3)):
        expected = ak.explain(lm, prompts[rows], ak.Continuation(continuations[rows]), method="input_x_gradient",
                              tokenizer=tok)
        got = store.attribution("input_x_gradient", rows)
        np.testing.assert_array_equal(got.matrix, expected.matrix.numpy())
        np.testing.assert_array_equal(np.asarray(got.values), expected.values.numpy())
        assert got.output_tokens == expected.output_tokens
        assert got.meta["continuation"] == expected.meta["continuation"]
    np.testing.assert_allclose(np.asarray(store["input_x_gradient"]),  # values: the matrix summed
                               np.asarray(store.matrix("input_x_gradient")).sum(1), rtol=1e-5, atol=1e-7)


def test_greedy_continuations_are_decoded_once_and_shared_by_the_methods(tmp_path, gpt):
    tok, lm = gpt
    store = ak.explain_dataset(lm, TEXTS[:5], ["saliency", "input_x_gradient"], tmp_path / "greedy.zarr",
                               batch_size=5, tokenizer=tok, max_new_tokens=3, progress=False)
    with torch.no_grad():  # greedy decoding written here: argmax, appended, three times
        for i, text in enumerate(TEXTS[:5]):
            ids = tok(text, return_tensors="pt")["input_ids"]
            for _ in range(3):
                ids = torch.cat([ids, lm(ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
            assert store._array("outputs/ids")[i].tolist() == ids[0, -3:].tolist()
    expected = ak.explain(lm, TEXTS[:5], method="saliency", tokenizer=tok, max_new_tokens=3)
    np.testing.assert_array_equal(store.attribution("saliency").matrix, expected.matrix.numpy())


class Interrupted(list):
    """Texts whose item ``at`` raises KeyboardInterrupt when read for the ``nth`` time."""

    def __init__(self, items, at, nth):
        super().__init__(items)
        self.at, self.nth, self.reads = at, nth, 0

    def __getitem__(self, index):
        if index == self.at:
            self.reads += 1
            if self.reads == self.nth:
                raise KeyboardInterrupt
        return super().__getitem__(index)


def test_an_interrupted_run_resumes_to_the_uninterrupted_values(tmp_path, bert):
    tok, clf = bert
    data = list(zip(TEXTS, LABELS))
    whole = ak.explain_dataset(clf, data, "saliency", tmp_path / "whole.zarr", batch_size=3, target="label",
                               tokenizer=tok, progress=False)
    out, cut = tmp_path / "cut.zarr", Interrupted(data, at=4, nth=2)
    with pytest.raises(KeyboardInterrupt, match="3 of 10 images are stored"):  # read 1: measured, 2: computed
        ak.explain_dataset(clf, cut, "saliency", out, batch_size=3, target="label", tokenizer=tok, progress=False)
    assert ak.open_store(out).batches_done.tolist() == [True, False, False, False]
    store = ak.explain_dataset(clf, cut, "saliency", out, batch_size=3, target="label", tokenizer=tok,
                               progress=False)  # the same data (its class is a setting), read again
    assert [r["status"] for r in store.runs] == ["interrupted", "finished"] and store.runs[-1]["images"] == 7
    np.testing.assert_array_equal(np.asarray(store["saliency"]), np.asarray(whole["saliency"]))
    np.testing.assert_array_equal(store.token_ids, whole.token_ids)
    assert store.targets.tolist() == LABELS and store.verify().ok


def test_a_damaged_chunk_is_found_and_computed_again_and_changed_texts_are_refused(tmp_path, bert):
    tok, clf = bert
    out = tmp_path / "run.zarr"
    store = ak.explain_dataset(clf, TEXTS, "saliency", out, batch_size=4, tokenizer=tok, progress=False)
    before = np.asarray(store["saliency"])
    chunk = out / "maps" / "saliency" / "c" / "1" / "0"
    chunk.write_bytes(chunk.read_bytes()[:10])
    health = ak.open_store(out).verify()
    assert not health.ok and health.damaged == [1] and "maps/saliency chunk c/1/0" in health.problems[0]
    with pytest.warns(StoreRepairWarning, match="batch 1"):
        again = ak.explain_dataset(clf, TEXTS, "saliency", out, batch_size=4, tokenizer=tok, progress=False)
    np.testing.assert_array_equal(np.asarray(again["saliency"]), before)
    assert again.verify().ok
    changed = TEXTS[:5] + ["the cat was good"] + TEXTS[6:]
    import zarr

    zarr.open_group(out, mode="r+")["done"][2] = False  # the last batch to compute: the run checks the others
    with pytest.raises(StoreError, match=r"item 5 of the data is not the one stored .*token ids"):
        ak.explain_dataset(clf, changed, "saliency", out, batch_size=4, tokenizer=tok, progress=False)
    other = word_tokenizer(list(reversed(["the", "a", "cat", "dog", "movie", "was", "good", "bad", "film"])),
                           cls_sep=True)
    with pytest.raises(StoreError, match="tokenizer was"):
        ak.explain_dataset(clf, TEXTS, "saliency", out, batch_size=4, tokenizer=other, progress=False)


def test_max_length_truncates_with_the_tokenizer(tmp_path, bert):
    tok, clf = bert
    store = ak.explain_dataset(clf, TEXTS, "saliency", tmp_path / "short.zarr", batch_size=4, tokenizer=tok,
                               max_length=4, progress=False)
    assert store["saliency"].shape == (10, 4)
    assert store.tokens(2) == tok.convert_ids_to_tokens(tok("the cat sat on the mat", truncation=True,
                                                            max_length=4)["input_ids"])  # [CLS] the cat [SEP]
    assert store.tokens(2)[-1] == "[SEP]"


def test_bad_calls_are_refused_before_any_work(tmp_path, bert, gpt):
    tok, clf = bert
    out = tmp_path / "bad.zarr"
    with pytest.raises(InvalidOptionError, match="metrics="):
        ak.explain_dataset(clf, TEXTS, "saliency", out, tokenizer=tok, metrics=["deletion_auc"], progress=False)
    with pytest.raises(InvalidOptionError, match="no kernel for text"):
        ak.explain_dataset(clf, TEXTS, "gradcam", out, tokenizer=tok, progress=False)
    with pytest.raises(InputError, match="holds a str where an image tensor belongs .for texts pass tokenizer="):
        ak.explain_dataset(clf, TEXTS, "saliency", out, progress=False)
    with pytest.raises(InputError, match=r"item 1 of the text data has 2\.5"):
        ak.explain_dataset(clf, [("good", 1), ("bad", 2.5)], "saliency", out, tokenizer=tok, progress=False)
    with pytest.raises(TargetError, match="carry their continuations"):
        ak.explain_dataset(gpt[1], [("a dog", "ran")], "saliency", out, target=3, tokenizer=gpt[0], progress=False)
    with pytest.raises(TargetError, match="have none"):
        ak.explain_dataset(clf, TEXTS, "saliency", out, target="label", tokenizer=tok, progress=False)
    with pytest.raises(InputError, match="beyond the model's 256 positions"):
        ak.explain_dataset(clf, [" ".join(["good"] * 300)], "saliency", out, tokenizer=tok, progress=False)
    assert not out.exists()


TORCHRUN_SCRIPT = """
import sys
import attribkit as ak
from attribkit.text.testing import tiny_bert_classifier, word_tokenizer
from tests.test_datasets_text import LABELS, TEXTS
tok = word_tokenizer(cls_sep=True)
ak.explain_dataset(tiny_bert_classifier(tok, classes=3), list(zip(TEXTS, LABELS)), ["saliency", "input_x_gradient"],
                   sys.argv[1], batch_size=3, tokenizer=tok, progress=False)
"""


def test_torchrun_with_two_processes_equals_one(tmp_path, bert):
    tok, clf = bert
    one = ak.explain_dataset(clf, list(zip(TEXTS, LABELS)), ["saliency", "input_x_gradient"], tmp_path / "one.zarr",
                             batch_size=3, tokenizer=tok, progress=False)
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", "--no-python", sys.executable, "-c",
                          TORCHRUN_SCRIPT, str(tmp_path / "two.zarr")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    b = ak.open_store(tmp_path / "two.zarr")
    assert b.complete and b.runs[-1]["processes"] == 2 and b.runs[-1]["images"] == 10 and b.verify().ok
    for method in ("saliency", "input_x_gradient"):
        np.testing.assert_array_equal(np.asarray(one[method]), np.asarray(b[method]))
    np.testing.assert_array_equal(one.token_ids, b.token_ids)
    np.testing.assert_array_equal(one.predictions.classes, b.predictions.classes)
    assert b.texts.tolist() == TEXTS


def test_the_report_of_a_text_store_shows_its_texts_and_methods(tmp_path, bert):
    import json
    import re

    tok, clf = bert
    from attribkit.datasets.folder import Unreadable

    data = TEXTS[:4] + [Unreadable("gone")]  # a skipped row: not in the report
    store = ak.explain_dataset(clf, data, ["saliency", "input_x_gradient"], tmp_path / "run.zarr", batch_size=2,
                               tokenizer=tok, progress=False)
    page = ak.write_report(store).read_text()
    assert (tmp_path / "run.html").is_file()
    payload = json.loads(re.search(r'<script type="application/json"[^>]*>(.*?)</script>', page, re.S).group(1))
    assert payload["methods"] == ["saliency", "input_x_gradient"] and len(payload["texts"]) == 4
    assert all(name in page for name in ("saliency", "input_x_gradient", "movie", "acting"))


def test_a_text_store_reads_without_torch(tmp_path, bert):
    tok, clf = bert
    ak.explain_dataset(clf, TEXTS[:3], "saliency", tmp_path / "run.zarr", tokenizer=tok, progress=False)
    code = ("import sys; sys.modules['torch'] = None\nimport attribkit as ak\n"
            f"r = ak.open_store({str(tmp_path / 'run.zarr')!r}).attribution('saliency', [1])\n"
            "print(type(r).__name__, r.tokens[0], r.values.shape)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["TokenAttribution", "['[CLS]',", "'a',", "'bad',", "'film',", "'[SEP]']", "(1,", "5)"]


def test_measuring_a_whole_number_of_chunks(bert):
    from attribkit.datasets.text_items import Tokenize, measure

    tok, _ = bert  # 4 texts in chunks of 2: the last flush has none (a tokenizer's call on [] fails)
    assert measure(TEXTS[:4], Tokenize(tok), chunk=2) == (max(len(tok(t)["input_ids"]) for t in TEXTS[:4]), 0, 0)
