"""``hf:PATH``: a Hugging Face model and tokenizer saved with save_pretrained into a local
folder, loaded by ak.open_model / ak.load_model / ak.load_tokenizer (nothing downloaded)."""

from __future__ import annotations

import sys

import pytest
import torch

import attribkit as ak
from attribkit.errors import MissingDependencyError, ModelLoadError

pytest.importorskip("transformers")

from attribkit.text.testing import (  # noqa: E402
    tiny_bert_classifier,
    tiny_gpt2,
    tiny_llama,
    word_tokenizer,
)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Folders of a tiny GPT-2, LLaMA-like LM, BERT classifier (named labels) and bare BERT
    encoder, each with its tokenizer; the original models and tokenizers beside them."""
    from transformers import BertConfig, BertModel

    root = tmp_path_factory.mktemp("hf")
    tok, cls_tok = word_tokenizer(), word_tokenizer(cls_sep=True)
    clf = tiny_bert_classifier(cls_tok)
    clf.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    torch.manual_seed(1)
    encoder = BertModel(BertConfig(vocab_size=len(cls_tok), hidden_size=16, num_hidden_layers=1,
                                   num_attention_heads=2, intermediate_size=32)).eval()
    models = {"gpt2": (tiny_gpt2(tok), tok), "llama": (tiny_llama(tok), tok), "clf": (clf, cls_tok),
              "encoder": (encoder, cls_tok)}
    for name, (model, tokenizer) in models.items():
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root, models


@pytest.mark.parametrize("name, cls", [("gpt2", "GPT2LMHeadModel"), ("llama", "LlamaForCausalLM"),
                                       ("clf", "BertForSequenceClassification"), ("encoder", "BertModel")])
def test_the_auto_class_follows_the_config_and_weights_are_the_saved_ones(saved, name, cls):
    root, models = saved
    loaded = ak.open_model(f"hf:{root / name}")
    assert type(loaded.model).__name__ == cls
    assert not loaded.model.training and loaded.weights == f"folder {root / name}"
    original = models[name][0].state_dict()
    state = loaded.model.state_dict()
    assert set(state) == set(original)
    assert all(torch.equal(state[k], original[k]) for k in original)
    assert loaded.model is not models[name][0]


def test_class_names_come_from_id2label_unless_default(saved):
    root, _ = saved
    assert ak.open_model(f"hf:{root / 'clf'}").class_names == ("negative", "neutral", "positive")
    assert ak.open_model(f"hf:{root / 'gpt2'}").class_names is None  # LABEL_0, LABEL_1 by default


def test_loaded_model_and_tokenizer_explain_as_the_originals(saved):
    root, models = saved
    model, tok = models["clf"]
    texts = ["the movie was good", "a bad film"]
    loaded = ak.load_model(f"hf:{root / 'clf'}")
    loaded_tok = ak.load_tokenizer(f"hf:{root / 'clf'}")
    assert loaded_tok(texts)["input_ids"] == tok(texts)["input_ids"]
    assert set(loaded_tok.all_special_ids) == set(tok.all_special_ids)
    ours = ak.explain(loaded, texts, method="saliency", tokenizer=loaded_tok)
    theirs = ak.explain(model, texts, method="saliency", tokenizer=tok)
    assert ours.tokens == theirs.tokens
    torch.testing.assert_close(ours.values, theirs.values)


def test_a_tokenizers_json_file_and_a_plain_path(saved, tmp_path):
    from tokenizers import Tokenizer

    root, models = saved
    tok = models["gpt2"][1]
    path = tmp_path / "tokenizer.json"
    tok.backend_tokenizer.save(str(path))
    raw = ak.load_tokenizer(str(path))
    assert isinstance(raw, Tokenizer) and raw.encode("the cat").ids == tok("the cat")["input_ids"]
    assert ak.load_tokenizer(str(root / "gpt2"))("the cat")["input_ids"] == tok("the cat")["input_ids"]


def test_errors_name_the_path(saved, tmp_path):
    root, _ = saved
    with pytest.raises(ModelLoadError, match=f"no such folder {tmp_path / 'nope'}.*nothing is downloaded"):
        ak.open_model(f"hf:{tmp_path / 'nope'}")
    with pytest.raises(ModelLoadError, match="is a file"):
        ak.open_model(f"hf:{root / 'gpt2' / 'config.json'}")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ModelLoadError, match=r"holds no config.json.*notes.txt"):
        ak.open_model(f"hf:{tmp_path / 'empty'}")
    with pytest.raises(ModelLoadError, match="holds no tokenizer"):
        ak.load_tokenizer(f"hf:{tmp_path / 'empty'}")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((root / "gpt2" / "config.json").read_text())
    with pytest.raises(ModelLoadError, match=f"cannot load the model saved in {broken}"):
        ak.open_model(f"hf:{broken}")  # a config without weights
    (broken / "tokenizer.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="no tokenizer can be read"):
        ak.load_tokenizer(f"hf:{broken}")
    with pytest.raises(ModelLoadError, match="not a tokenizers JSON file"):
        ak.load_tokenizer(str(broken / "tokenizer.json"))
    with pytest.raises(ModelLoadError, match="weights 'DEFAULT' do not apply"):
        ak.open_model(f"hf:{root / 'gpt2'}", "DEFAULT")
    with pytest.raises(ModelLoadError, match="hf:PATH"):
        ak.open_model("hf:")


def test_missing_transformers_names_the_extra(saved, monkeypatch):
    root, _ = saved
    monkeypatch.setitem(sys.modules, "transformers", None)  # import transformers -> ImportError
    with pytest.raises(MissingDependencyError, match=r"attribkit\[hf\]"):
        ak.open_model(f"hf:{root / 'gpt2'}")
    with pytest.raises(MissingDependencyError, match=r"attribkit\[hf\]"):
        ak.load_tokenizer(f"hf:{root / 'gpt2'}")
