"""No name can break a report (issue 23): the page's embedded JSON escapes every HTML-significant
character, so hostile text in any field the page shows (file name, class folder, layer, method
option value, metric name, error, title) stays data. Read as HTML here, and in Chromium."""

import dataclasses
import html
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch
from PIL import Image

import attribkit as ak
from attribkit.hookspecs import hookimpl
from attribkit.host import get_host
from attribkit.registry import MethodSpec
from attribkit.report.page import json_script

pytest.importorskip("zarr")

FILE = "<!--<script>.png"                      # the name of the issue
OTHER_FILE = "]]>&amp;\u2028x<\u2029.png"
BAD_FILE = "<!--bad<script>.png"               # not an image: its error is on the page
CLASS = "<!--cls<script>&lt;"
LAYER = "<!--layer<script>"
OPTION = "</script><!--<script>&\u2028"
TITLE = "</title><!--<script>"
HOSTILE = (FILE, OTHER_FILE, CLASS, LAYER, OPTION, TITLE, "</script>", "<!--", "-->", "\u2028\u2029", "&#60;")


def script_bodies(text: str) -> list[tuple[dict, str]]:
    """Each ``<script>`` element as the HTML tokenizer sees it: (attributes, text)."""
    found: list[tuple[dict, str]] = []

    class Scripts(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == "script":
                found.append((dict(attrs), ""))

        def handle_data(self, data):
            if self.lasttag == "script" and found and not found[-1][1]:
                found[-1] = (found[-1][0], data)

    Scripts().feed(text)
    return found


def test_json_script_escapes_every_html_significant_character_and_round_trips():
    data = {"names": list(HOSTILE), "<key>": "&", "n": [1, 2.5, None]}
    text = json_script(data)
    assert not set(text) & set("<>&\u2028\u2029")
    assert json.loads(text) == data
    # the escapes are JSON's own: \u003c, not an HTML entity that JSON.parse would keep
    assert "\\u003c!--\\u003cscript\\u003e.png" in text and "\\u2028" in text and "&lt;" not in text


class Hostile(torch.nn.Module):
    """A small CNN whose convolution is registered under a hostile name."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.add_module(LAYER, torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU()))
        self.fc = torch.nn.Linear(6, 3)

    def forward(self, x):
        return self.fc(getattr(self, LAYER)(x).mean((2, 3)))


def quoted_saliency():
    """A method with a free-text option: saliency under another name."""
    def kernel(model, inputs, *, method, target, layer, batch_size, options):
        result = ak.explain(model, inputs, target=target, method="saliency", batch_size=batch_size)
        return dataclasses.replace(result, method=method)
    return kernel


class QuotePlugin:
    @hookimpl
    def register_methods(self, register):
        register(MethodSpec(name="quoted", family="gradient", factory=quoted_saliency,
                            options={"note": ""}, description="saliency with a note"))


def hostile_folder(root):
    (root / CLASS).mkdir(parents=True)
    (root / "plain").mkdir()
    rng = np.random.default_rng(0)
    for folder in (root / CLASS, root / "plain"):
        for name in (FILE, OTHER_FILE, "a.png"):
            Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(folder / name)
    (root / CLASS / BAD_FILE).write_text("not an image")
    return root


@pytest.fixture
def hostile_report(tmp_path, recwarn):  # recwarn: the report warns that BAD_FILE has no picture
    get_host().add_plugin(QuotePlugin(), "quote")
    folder = hostile_folder(tmp_path / "images")
    store = ak.explain_dataset(Hostile().eval(), ak.image_folder(folder, size=16), ["quoted", "gradcam"],
                               tmp_path / "run.zarr", layer=LAYER, batch_size=4, metrics=["deletion_auc"],
                               progress=False, quoted={"note": OPTION})
    return store, ak.write_report(store, tmp_path / "report.html", title=TITLE)


def test_store_report_with_hostile_names_keeps_two_scripts_and_its_data(hostile_report):
    store, path = hostile_report
    text = path.read_text(encoding="utf-8")
    scripts = script_bodies(text)
    assert [attrs.get("id") for attrs, _ in scripts] == ["report-data", None]
    data_text = scripts[0][1]
    assert not set(data_text) & set("<>&\u2028\u2029")
    data = json.loads(data_text)
    ids = [row["id"] for row in data["rows"]]
    assert ids == list(store.ids) and f"{CLASS}/{FILE}" in ids and f"plain/{OTHER_FILE}" in ids
    assert data["methods"]["gradcam"]["layer"] == LAYER
    bad = next(row for row in data["rows"] if row["id"] == f"{CLASS}/{BAD_FILE}")
    assert BAD_FILE in bad["facts"] and "not readable" in bad["facts"]
    # the page's own script is whole, and the visible text shows the names as written
    assert scripts[1][1].lstrip().startswith("(function () {") and scripts[1][1].rstrip().endswith("}());")
    shown = html.unescape(re.sub(r"<[^>]+>", " ", text.split('<script type="application/json"')[0]))
    for name in (TITLE, FILE, OTHER_FILE, CLASS, LAYER, repr(OPTION)):
        assert name in shown, name


def bench_records() -> list[dict]:
    rows = []
    for method in (f"saliency{OPTION}", "gradcam"):
        rows += [{"run": "r", "method": method, "metric": f"deletion_auc{FILE}", "higher_is_better": False,
                  "mean": 0.2 if method == "gradcam" else 0.3, "sem": 0.01, "n": 4,
                  "warnings": [f"careful {TITLE}"]},
                 {"run": "r", "method": method, "metric": "speed", "ratio": 1.5, "floor": f"forward{CLASS}",
                  "images_per_s": 10.0, "median_ms": 5.0, "peers": {LAYER: {"ratio": 2.0}}}]
    rows.append({"run": "r", "method": "gradcam", "metric": "pointing_game", "error": f"ValueError: {BAD_FILE}"})
    return rows


def test_bench_report_with_hostile_names_keeps_two_scripts(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(bench_records()))
    text = ak.write_report(tmp_path, title=TITLE).read_text(encoding="utf-8")
    scripts = script_bodies(text)
    assert [attrs.get("id") for attrs, _ in scripts] == ["report-data", None]
    assert json.loads(scripts[0][1]) == {"kind": "bench"}
    assert f"deletion_auc{FILE}".replace("<", "&lt;").replace(">", "&gt;") in text


# ------------------------------------------------------------------ in Chromium

def test_hostile_store_report_in_chromium(browser, hostile_report):
    from tests.test_report_browser import open_page

    store, path = hostile_report
    page, problems, requests = open_page(browser, path)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)
    assert page.evaluate("document.scripts.length") == 2
    assert page.title() == TITLE
    assert page.eval_on_selector_all("#images tbody tr", "rows => rows.map(r => r.dataset.imageId)") \
        == list(store.ids)
    drawn = page.eval_on_selector_all("canvas.overlay", "cs => cs.map(c => c.dataset.drawn)")
    readable = len(store) - len(store.skipped)
    assert sorted(drawn, key=str) == ["1"] * (2 * readable) + ["empty"] * (2 * len(store.skipped))
    page.select_option("#class-filter", CLASS)  # the filter matches the hostile class name exactly
    shown = page.eval_on_selector_all("#images tbody tr:not([hidden])", "rows => rows.length")
    assert shown == sum(1 for label in store.labels if label >= 0 and store.class_names[label] == CLASS) == 3
    page.locator(f'#images tr[data-image-id="{CLASS}/{FILE}"] td[data-m="gradcam"] button.cell').click()
    assert page.inner_text("#viewer-title") == f"{CLASS}/{FILE}"
    assert LAYER in page.inner_text("#view-scale")
    assert not problems, problems
    assert requests == [path.as_uri()], requests
    page.close()


def test_hostile_bench_report_in_chromium(browser, tmp_path):
    from tests.test_report_browser import open_page

    (tmp_path / "results.json").write_text(json.dumps(bench_records()))
    path = ak.write_report(tmp_path, title=TITLE)
    page, problems, requests = open_page(browser, path)
    assert page.evaluate("document.scripts.length") == 2
    methods = "rows => rows.map(r => r.dataset.method)"
    page.click('th[data-key="ratio"] button')  # the page's script sorts: it ran
    page.click(f'th[data-key="deletion_auc{FILE}"] button')
    assert page.eval_on_selector_all("#metrics tbody tr", methods) == ["gradcam", f"saliency{OPTION}"]
    assert not problems, problems
    assert requests == [path.as_uri()], requests
    page.close()


@pytest.fixture(scope="module")
def browser():
    from tests.test_report_browser import headless_chromium  # skips without playwright

    yield from headless_chromium()
