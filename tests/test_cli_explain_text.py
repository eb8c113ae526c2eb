"""``attribkit explain-text MODEL TEXT...``: tokens highlighted in the terminal, --json,
--html; one-line errors (exit 2) before the model is loaded."""

from __future__ import annotations

import json

import pytest
import torch

from attribkit.cli import main

pytest.importorskip("transformers")

from attribkit.text.testing import tiny_bert_classifier, tiny_gpt2, word_tokenizer  # noqa: E402

FACTORY = '''
from attribkit.text.testing import tiny_bert_classifier, word_tokenizer


def classifier():
    return tiny_bert_classifier(word_tokenizer(cls_sep=True))
'''


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_hf")
    tok, cls_tok = word_tokenizer(), word_tokenizer(cls_sep=True)
    clf = tiny_bert_classifier(cls_tok)
    clf.config.id2label = {0: "negative", 1: "neutral", 2: "positive"}
    for name, model, tokenizer in (("lm", tiny_gpt2(tok), tok), ("clf", clf, cls_tok)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root, clf, cls_tok


def reference_saliency(model, tok, text):
    """‖∂ logit_c / ∂ E_t‖₂ per token, c the top class, written with torch.autograd."""
    ids = tok([text], return_tensors="pt")["input_ids"]
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
    logits = model(inputs_embeds=embeds).logits[0]
    top = int(logits.argmax())
    (grad,) = torch.autograd.grad(logits[top], embeds)
    return top, grad[0].norm(dim=-1)


def test_json_values_are_the_saliency_of_the_top_class(folders, capsys):
    root, clf, tok = folders
    assert main(["explain-text", f"hf:{root / 'clf'}", "the movie was good", "a bad film", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "saliency" and out["kind"] == "class"
    for entry, text in zip(out["texts"], ["the movie was good", "a bad film"]):
        top, want = reference_saliency(clf, tok, text)
        assert entry["text"] == text and entry["target"] == top
        assert entry["class_name"] == ["negative", "neutral", "positive"][top]
        assert entry["tokens"][0] == "[CLS]" and entry["special"][0] and not entry["special"][1]
        torch.testing.assert_close(torch.tensor(entry["values"]), want, rtol=1e-4, atol=1e-7)


def test_terminal_view_plain_and_coloured(folders, capsys):
    root, clf, tok = folders
    assert main(["explain-text", f"hf:{root / 'clf'}", "the movie was good", "--color", "never"]) == 0
    plain = capsys.readouterr().out
    top, want = reference_saliency(clf, tok, "the movie was good")
    name = ["negative", "neutral", "positive"][top]
    assert plain.splitlines()[0].startswith("saliency · 1 text(s) · scale ±")
    assert plain.splitlines()[1].startswith(f"[0] class {top} ({name}): [CLS](")
    assert f"movie({float(want[2]):+.3g})" in plain and "\x1b" not in plain
    main(["explain-text", f"hf:{root / 'clf'}", "the movie was good"])  # auto: captured stdout is no TTY
    assert "\x1b" not in capsys.readouterr().out
    main(["explain-text", f"hf:{root / 'clf'}", "the movie was good", "--color", "always"])
    assert "\x1b[48;2;" in capsys.readouterr().out


def test_continuation_per_output_token_and_html(folders, capsys, tmp_path):
    root, _, _ = folders
    page = tmp_path / "tokens.html"
    code = main(["explain-text", f"hf:{root / 'lm'}", "the cat sat on the", "a dog", "--continuation", "mat",
                 "--continuation", "ran under", "--method", "input_x_gradient", "--per-output-token",
                 "--color", "never", "--html", str(page)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert "continuation log_prob" in lines[0]
    assert lines[1].endswith("→ mat") and lines[2].startswith("    mat ← the(")
    assert lines[3].startswith("[1]: a(") and lines[3].endswith("→ ran under")
    assert lines[4].startswith("    ran ← a(") and lines[5].startswith("    under ← a(")
    assert lines[6] == f"html: {page}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>") and '<meta charset="utf-8">' in text
    assert text.count("<details") == 2 and ">dog</span>" in text


def test_greedy_continuation_as_json(folders, capsys):
    root, _, _ = folders
    assert main(["explain-text", f"hf:{root / 'lm'}", "the cat sat", "--max-new-tokens", "2", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["texts"][0]
    assert len(entry["output_tokens"]) == 2 and len(entry["matrix"]) == 2 and len(entry["matrix"][0]) == 3
    torch.testing.assert_close(torch.tensor(entry["matrix"]).sum(0), torch.tensor(entry["values"]))


def test_a_factory_model_with_a_tokenizer_folder(folders, capsys, tmp_path, monkeypatch):
    root, _, _ = folders
    (tmp_path / "my_text_models.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["explain-text", "my_text_models:classifier", "bad film", "--tokenizer", str(root / "clf"),
                 "--color", "never", "--skip-special-tokens"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith("[0] class ") and ": [CLS] bad(" in line and line.endswith(" [SEP]")


@pytest.mark.parametrize("argv, message", [
    (["hf:{root}/nope", "x"], "no such folder"),
    (["my_pkg.models:factory", "x"], "pass --tokenizer PATH"),
    (["hf:{root}/lm", "x", "--method", "gradcam"], "no kernel for text"),
    (["hf:{root}/lm", "x", "--option", "n_stepz=3"], "no option 'n_stepz'"),
    (["hf:{root}/lm", "x", "--option", "oops"], "--option takes NAME=VALUE"),
    (["hf:{root}/lm", "x", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    (["hf:{root}/lm", "x", "y", "--continuation", "a", "--continuation", "b", "--continuation", "c"],
     "one per text (2), got 3"),
    (["hf:{root}/lm", "  "], "text 0 is empty"),
    (["hf:{root}/lm", "x", "--html", "{root}/no/such/t.html"], "no such folder"),
    (["hf:{root}/lm", "x", "--html", "{root}"], "is a folder"),
    (["hf:{root}/lm", "x", "--tokenizer", "{root}"], "holds no tokenizer"),
])
def test_errors_are_one_line_exit_2_before_the_model_loads(folders, capsys, monkeypatch, argv, message):
    root, _, _ = folders

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("attribkit.models.open_model", refuse)
    code = main(["explain-text", *[a.format(root=root) for a in argv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("attribkit: error: ") and message in err[0], err


def test_a_target_out_of_range_is_a_one_line_error(folders, capsys):
    root, _, _ = folders
    assert main(["explain-text", f"hf:{root / 'clf'}", "bad film", "--target", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("attribkit: error: ")
