"""The HTML report of token attributions (attribkit.report.text): structure, data, escaping."""

import json
import re
import shutil

import numpy as np
import pytest

import attribkit as ak
from attribkit.errors import AttribkitError
from attribkit.report.text import text_section_html, write_text_report
from attribkit.text.result import TokenAttribution

EVIL = "</script><b>x</b><!--"


def classifier_result(method: str, values: list[list[float]]) -> TokenAttribution:
    tokens = [["[CLS]", "good", "film", "[SEP]"], ["[CLS]", EVIL, "[SEP]"]]
    array = np.zeros((2, 4))
    for i, row in enumerate(values):
        array[i, :len(row)] = row
    special = np.array([[1, 0, 0, 1], [1, 0, 1, 0]], bool)
    mask = np.array([[0, 1, 1, 0], [0, 1, 0, 0]], bool)
    return TokenAttribution(values=array, method=method, target=np.array([1, 0]), tokens=tokens, mask=mask,
                            special=special)


def continuation_result() -> TokenAttribution:
    matrix = np.array([[[0.5, -1.0, 0.0], [0.25, 2.0, 0.0]], [[1.5, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    return TokenAttribution(values=matrix.sum(1), method="saliency", tokens=[["the", "cat", "sat"], ["a"]],
                            mask=np.array([[1, 1, 1], [1, 0, 0]], bool), special=np.zeros((2, 3), bool),
                            matrix=matrix, output_tokens=[["on", "mats"], ["dog"]])


def page_data(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


@pytest.fixture
def report(tmp_path):
    results = {"saliency": classifier_result("saliency", [[0, 0.5, -0.25, 0], [0, 2.0, 0]]),
               "occ<lusion>": classifier_result("occlusion", [[0, -1.0, 4.0, 0], [0, 1.0, 0]])}
    metrics = {"saliency": {"comprehensiveness": [0.25, np.nan]},
               "occ<lusion>": {"comprehensiveness": np.array([0.5, 0.75]), "my&metric": [3.0, 1.0]}}
    evidence = [[False, True, False, False], [False, True, False]]
    path = write_text_report(tmp_path / "sub" / "t.html", results, metrics, title="T <i>", evidence=evidence)
    return path, path.read_text(), results


def test_rows_columns_and_data(report):
    _, text, results = report
    body = text.split('id="texts"')[1].split("</table>")[0]
    assert body.count("<tr data-row=") == 2
    assert len(re.findall(r'<td data-m="\d">', body)) == 2 * 2          # a cell per text and method
    # the token cells: one span per token, values in the tooltips
    assert 'title="film: -0.25"' in body and 'title="film: 4"' in body
    assert 'title="good: 0.5 (evidence)"' in body                          # outlined ground truth
    assert body.count('class="tok special off"') == 2 * 4                  # [CLS]/[SEP] carry no value here
    data = page_data(text)
    assert data["methods"] == ["saliency", "occ<lusion>"]
    for name, result in results.items():
        for i, tokens in enumerate(result.tokens):
            assert data["texts"][i]["tokens"] == tokens
            assert data["texts"][i]["values"][name] == result.values[i, :len(tokens)].tolist()
    assert data["texts"][1]["metrics"]["saliency"] == {"comprehensiveness": None}   # NaN: no score
    assert data["texts"][0]["metrics"]["occ<lusion>"] == {"comprehensiveness": 0.5, "my&metric": 3.0}


def test_summary_means_and_sort_headers(report):
    _, text, _ = report
    summary = text.split('id="text-summary"')[1].split("</table>")[0]
    # occlusion's comprehensiveness: mean 0.625, s.e.m. std([0.5, 0.75], ddof=1) / sqrt(2) = 0.125
    assert 'data-value="0.625">0.625 <span class="sem">± 0.125 (n=2)' in summary
    assert 'data-value="0.25">0.250' in summary                            # saliency: the one finite score
    assert "my&amp;metric" in summary and "occ&lt;lusion&gt;" in summary
    keys = re.findall(r'<th scope="col"[^>]*data-key="([^"]+)"><button type="button" class="sort">', text)
    assert {"n", "length", "m0k0", "m1k0", "m1k1", "method", "k0", "k1"} <= set(keys)
    assert 'class="sortable"' in text


def test_escaping_and_self_contained(report):
    path, text, _ = report
    assert text.count("<script") == 2 and text.count("</script>") == 2    # the data cannot end its script
    assert "<b>x</b>" not in text and "&lt;/script&gt;&lt;b&gt;x&lt;/b&gt;&lt;!--" in text
    assert "<title>T &lt;i&gt;</title>" in text
    assert page_data(text)["texts"][1]["tokens"][1] == EVIL                # read back unchanged
    assert not re.search(r"(src|href)=\"(https?:)?//", text) and "http://" not in text.replace(
        "http://www.w3.org/2000/svg", "")
    assert path.parent.name == "sub"


def test_continuation_matrix(tmp_path):
    result = continuation_result()
    path = ak.write_report(result, tmp_path / "lm.html")                  # routed through write_report
    text = path.read_text()
    assert text.count("<details class=\"matrix\">") == 2
    assert "output × input tokens (2 × 3)" in text and "output × input tokens (1 × 1)" in text
    assert 'title="mats ← cat: 2"' in text and 'title="on ← cat: -1"' in text
    assert 'title="dog ← a: 1.5"' in text
    data = page_data(text)
    assert data["texts"][0]["matrix"]["saliency"] == [[0.5, -1.0, 0.0], [0.25, 2.0, 0.0]]
    assert data["texts"][1]["matrix"]["saliency"] == [[1.5]]
    assert data["texts"][0]["output_tokens"] == ["on", "mats"]
    # scales: the matrix's largest magnitude (2); the values' ([0.75, 1, 0] and [1.5] shown): 1.5
    assert "−2.000" in text and "−1.500" in text


def test_section_and_bad_inputs():
    results = {"a": classifier_result("a", [[0, 1, 1, 0], [0, 1, 0]])}
    html = text_section_html(results, ids=["x<1>", "y"], table_id="tt")
    assert 'id="tt"' in html and "x&lt;1&gt;" in html and "text-summary" not in html   # no metrics: no summary
    with pytest.raises(AttribkitError, match="2 texts"):
        text_section_html(results, {"a": {"m": [1.0]}})
    with pytest.raises(ValueError, match="no result"):
        text_section_html(results, {"b": {"m": [1.0, 2.0]}})
    padded = text_section_html(results, evidence=np.array([[0, 0, 1, 0], [0, 1, 0, 0]], bool))  # as values
    assert 'title="film: 1 (evidence)"' in padded and 'title="good: 1"' in padded
    with pytest.raises(ValueError, match="evidence\\[1\\] has 1 marks"):
        text_section_html(results, evidence=[[True] * 4, [True]])
    other = classifier_result("b", [[0, 1, 1, 0], [0, 1, 0]])
    other.tokens = [["a"], ["b"]]
    with pytest.raises(ValueError, match="other texts"):
        text_section_html({"a": results["a"], "b": other})
    with pytest.raises(ValueError, match="TokenAttribution"):
        text_section_html({"a": np.zeros(3)})


def test_sort_in_chromium(report):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=path, headless=True)
        except Exception as exc:  # noqa: BLE001 - a chromium that cannot start here
            pytest.skip(f"chromium does not start: {str(exc).splitlines()[0]}")
        page = browser.new_page()
        problems, requests = [], []
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(report[0].as_uri())
        order = "#texts tbody tr"
        read = "rows => rows.map(r => r.dataset.row)"
        assert page.eval_on_selector_all(order, read) == ["0", "1"]
        page.click('#texts th[data-key="length"] button')                  # 4 tokens, 3 tokens: ascending
        assert page.eval_on_selector_all(order, read) == ["1", "0"]
        page.click('#texts th[data-key="m1k1"] button')                    # my&metric 3.0, 1.0
        assert page.eval_on_selector_all(order, read) == ["1", "0"]
        page.click('#texts th[data-key="m1k1"] button')                    # again: descending
        assert page.eval_on_selector_all(order, read) == ["0", "1"]
        page.click('#text-summary th[data-key="k0"] button')
        assert page.eval_on_selector_all("#text-summary tbody tr th", "c => c.map(x => x.textContent)") == [
            "saliency", "occ<lusion>"]
        browser.close()
    assert problems == [] and requests == [report[0].as_uri()]
