"""Looking at token attributions (attribkit.text.views, attribkit.text.plots): colours
against hand-computed RGB, escaping, dimmed specials, the terminal's ANSI codes and
plain values, ak.show's figure and ak.compare on texts."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.text.result import TokenAttribution
from attribkit.text.views import (
    html_tokens,
    shown_token,
    terminal_tokens,
    token_rgb,
    use_color,
)

pytest.importorskip("transformers")


def classifier_result(skip_special: bool = False) -> TokenAttribution:
    """Two texts by hand: [CLS] good bad [SEP] (a large value on the special [CLS]) and
    a <b>& (a token to escape), right-padded."""
    values = torch.tensor([[9.0, 4.0, -1.0, 0.0], [0.5, -2.0, 0.0, 0.0]])
    special = torch.tensor([[True, False, False, True], [False, False, False, False]])
    mask = torch.tensor([[not skip_special, True, True, not skip_special], [True, True, False, False]])
    return TokenAttribution(values=values, method="saliency<script>", target=torch.tensor([2, 0]),
                            meta={"kind": "class"}, tokens=[["[CLS]", "good", "bad", "[SEP]"], ["a", "<b>&"]],
                            mask=mask, special=special)


def continuation_result() -> TokenAttribution:
    matrix = torch.tensor([[[1.0, -2.0], [0.5, 0.0]]])  # 2 output tokens x 2 prompt tokens
    return TokenAttribution(values=matrix.sum(1), method="input_x_gradient", meta={"kind": "continuation",
                            "score": "log_prob"}, tokens=[["the", "Ġcat"]], mask=torch.ones(1, 2, dtype=bool),
                            special=torch.zeros(1, 2, dtype=bool), matrix=matrix, output_tokens=[["Ġsat", "Ċ"]])


def test_colours_are_white_blended_towards_red_or_blue():
    assert token_rgb(0.0) == (255, 255, 255)
    assert token_rgb(1.0) == (214, 39, 40) and token_rgb(7.0) == (214, 39, 40)  # clipped
    assert token_rgb(-1.0) == (31, 119, 180)
    # 255 + 0.2 * (214 - 255) = 246.8, 255 + 0.2 * (39 - 255) = 211.8, 255 + 0.2 * (40 - 255) = 212
    assert token_rgb(0.2) == (247, 212, 212)
    # 255 - 0.25 * 224 = 199, 255 - 0.25 * 136 = 221, 255 - 0.25 * 75 = 236.25
    assert token_rgb(-0.25) == (199, 221, 236)
    assert token_rgb(float("nan")) == (255, 255, 255)


def test_tokens_are_shown_without_byte_level_markers():
    assert [shown_token(t) for t in ("Ġthe", "▁cat", "Ġ", "Ċ", "a\tb", "", "##ing")] == \
        ["the", "cat", "␣", "⏎", "a⇥b", "∅", "##ing"]


def test_html_escapes_and_colours_on_one_scale_without_specials():
    page = html_tokens(classifier_result())
    assert "<script>" not in page and "saliency&lt;script&gt;" in page
    assert "&lt;b&gt;&amp;" in page and "<b>&" not in page
    # the scale is 4 (the largest |value| on a token that is not special; [CLS]'s 9 is dimmed)
    assert "scale ±4 " in page
    assert "background:rgb(214,39,40)" in page            # good: 4 / 4
    assert "background:rgb(199,221,236)" in page          # bad: -1 / 4
    assert page.count("opacity:0.6") == 2                 # [CLS] and [SEP] dimmed
    assert "class 2" in page and "class 0" in page


def test_html_of_a_continuation_holds_the_matrix_on_its_own_scale():
    page = html_tokens(continuation_result())
    assert "→" in page and ">sat</span>" in page and ">⏎</span>" in page and ">cat</span>" in page
    assert 'title="Ġcat -2"' in page  # the raw token and its value in the tooltip
    assert "<details" in page and page.count("<td ") == 4
    # matrix scale 2: entry -2 is full blue, 1 is half red (255 - 0.5 * 41 = 234.5 -> 234, 147, 147.5 -> 148)
    assert "scale ±2)" in page and "background:rgb(31,119,180);min-width" in page
    assert "background:rgb(234,147,148);min-width" in page
    assert "scale ±2 " in page  # values = [1 + 0.5, -2 + 0]


def test_repr_html_of_a_real_result_is_the_token_view():
    from attribkit.text.testing import tiny_bert_classifier, word_tokenizer

    tok = word_tokenizer(cls_sep=True)
    r = ak.explain(tiny_bert_classifier(tok), ["the movie was good"], method="saliency", tokenizer=tok)
    page = r._repr_html_()
    assert 'class="attribkit-tokens"' in page and ">movie</span>" in page


def test_terminal_colour_and_plain_views():
    r = classifier_result()
    coloured = terminal_tokens(r, color=True)
    assert "\x1b[48;2;214;39;40m\x1b[38;2;255;255;255mgood\x1b[0m" in coloured
    assert "\x1b[48;2;199;221;236m\x1b[38;2;0;0;0mbad\x1b[0m" in coloured
    assert "\x1b[2m[CLS]\x1b[0m" in coloured
    plain = terminal_tokens(r, color=False, class_names=["neg", "neu", "pos"])
    assert "\x1b" not in plain
    lines = plain.splitlines()
    assert lines[1] == "[0] class 2 (pos): [CLS](+9) good(+4) bad(-1) [SEP](+0)"
    assert lines[2] == "[1] class 0 (neg): a(+0.5) <b>&(-2)"
    skipped = terminal_tokens(classifier_result(skip_special=True), color=False).splitlines()
    assert skipped[1] == "[0] class 2: [CLS] good(+4) bad(-1) [SEP]"  # no value where mask is False


def test_terminal_per_output_token_lines():
    text = terminal_tokens(continuation_result(), color=False, per_output=True)
    assert text.splitlines()[1:] == ["[0]: the(+1.5) cat(-2) → sat ⏎", "    sat ← the(+1) cat(-2)",
                                     "    ⏎ ← the(+0.5) cat(+0)"]


def test_colour_follows_the_stream_unless_forced(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert not use_color(io.StringIO()) and use_color(Terminal())
    assert use_color(io.StringIO(), True) and not use_color(Terminal(), False)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Terminal()) and use_color(Terminal(), True)
    assert "\x1b" not in terminal_tokens(classifier_result(), stream=Terminal())


def test_show_draws_a_line_of_tokens_per_text():
    from attribkit.text.plots import DIM

    fig = ak.show(classifier_result())
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["[CLS]", "good", "bad", "[SEP]", "a", "<b>&"]
    colours = [tuple(p.get_facecolor()[:3]) for p in ax.patches]
    assert colours[0] == DIM and colours[3] == DIM
    np.testing.assert_allclose(colours[1], np.array(token_rgb(1.0)) / 255, atol=2 / 255)
    np.testing.assert_allclose(colours[2], np.array(token_rgb(-0.25)) / 255, atol=2 / 255)
    np.testing.assert_allclose(colours[5], np.array(token_rgb(-0.5)) / 255, atol=2 / 255)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0 · class 2", "1 · class 0"]
    with pytest.raises(ValueError, match="without images"):
        ak.show(classifier_result(), torch.zeros(2, 3, 8, 8))


def test_show_of_a_continuation_adds_the_output_by_input_matrix():
    fig = ak.show(continuation_result())
    image = fig.axes[1].images[0]
    np.testing.assert_allclose(np.asarray(image.get_array()), [[1.0, -2.0], [0.5, 0.0]])
    assert image.get_clim() == (-2.0, 2.0)
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["the", "cat"]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["sat", "⏎"]


def test_compare_draws_each_method_on_its_own_scale():
    from attribkit.text.testing import tiny_bert_classifier, word_tokenizer

    tok = word_tokenizer(cls_sep=True)
    model = tiny_bert_classifier(tok)
    texts = ["the movie was good", "bad film"]
    fig = ak.compare(model, texts, ["saliency", "input_x_gradient"], tokenizer=tok, skip_special_tokens=True)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["0 · saliency", "input_x_gradient", "1 · saliency", "input_x_gradient"]
    expected = []
    results = [ak.explain(model, texts, method=m, tokenizer=tok, skip_special_tokens=True)
               for m in ("saliency", "input_x_gradient")]
    for i in range(2):
        for r in results:
            values = r.values.numpy()
            inner = r.mask.numpy() & ~r.special.numpy()
            scale = np.abs(values[inner]).max()
            expected += [np.array(token_rgb(v / scale)) / 255 if inner[i, t] else None
                         for t, v in enumerate(values[i, :len(r.tokens[i])])]
    assert len(ax.patches) == len(expected) == 2 * (6 + 4)
    for patch, want in zip(ax.patches, expected):
        if want is not None:
            np.testing.assert_allclose(patch.get_facecolor()[:3], want, atol=2 / 255)


def test_long_results_are_cut_and_long_texts_wrap():
    n = 20
    words = [f"w{t}" for t in range(40)]  # 40 tokens of 2-3 characters: 3-4 cells each
    r = TokenAttribution(values=torch.arange(n * 40, dtype=torch.float32).reshape(n, 40), method="m",
                         tokens=[words] * n, mask=torch.ones(n, 40, dtype=bool), special=torch.zeros(n, 40, dtype=bool))
    page = html_tokens(r, limit=3)
    assert page.count(">w39</span>") == 3 and "… 17 more text(s)" in page
    from attribkit.text.plots import token_figure

    ax = token_figure(r, limit=2, width=50).axes[0]
    rows = sorted({round(p.get_y()) for p in ax.patches})
    # a token takes its characters + 1: w0-w9 3 each, w10-w39 4 each; lines of at most 50 hold
    # w0-w14 (30 + 20), w15-w26 (48), w27-w38 (48), w39: 4 lines per text
    assert len(ax.patches) == 80 and len(rows) == 8 and len(ax.get_yticks()) == 2
    assert all(p.get_x() + p.get_width() <= 50 for p in ax.patches)
    assert ax.get_xlabel() == "… 18 more text(s)"
