"""The HTML report in a real browser: headless Chromium (Debian's package) driven by Playwright.

The page loads from file:// with no console error and no request to anything but
the file itself, every picture and map is drawn, sorting reorders the rows,
filtering hides them, the large view opens (by mouse and by keyboard) and
closes with Escape, and the bench report's table sorts. A screenshot of each is
saved under the test's tmp_path (and the store's one copied to
$ATTRIBKIT_REPORT_SCREENSHOT when that is set), to be looked at.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

import attribkit as ak
from tests.dataset_support import small_model
from tests.test_report import CLASSES, fake_records, make_folder

pytest.importorskip("zarr")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def headless_chromium():
    """Yields a launched headless Chromium (skips the test where there is none), closed after."""
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=path, headless=True)
        except Exception as exc:  # noqa: BLE001 - a chromium that cannot start here
            pytest.skip(f"chromium at {path} does not start: {str(exc).splitlines()[0]}")
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium()


def open_page(browser, path: Path):
    """The page at ``path`` with its console errors, page errors and requests recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(5_000)
    problems, requests = [], []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning")
            else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    return page, problems, requests


def row_ids(page) -> list[str]:
    return page.eval_on_selector_all("#images tbody tr", "rows => rows.map(r => r.dataset.imageId)")


def shown_ids(page) -> list[str]:
    return page.eval_on_selector_all("#images tbody tr:not([hidden])", "rows => rows.map(r => r.dataset.imageId)")


@pytest.fixture(scope="module")
def store_page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    folder = make_folder(tmp / "images", per_class=4)
    store = ak.explain_dataset(small_model(), ak.image_folder(folder, size=16), ["saliency", "gradcam"],
                               tmp / "run.zarr", batch_size=6, metrics=["deletion_auc"], progress=False)
    return store, ak.write_report(store, tmp / "report.html")


def test_store_report_in_chromium(browser, store_page, tmp_path):
    store, path = store_page
    page, problems, requests = open_page(browser, path)
    page.wait_for_selector("body[data-ready='1']", timeout=15_000)

    # every picture decoded, every map drawn (and not blank)
    widths = page.eval_on_selector_all("#images img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == len(store) and min(widths) > 0
    drawn = page.eval_on_selector_all("canvas.overlay", "cs => cs.map(c => c.dataset.drawn)")
    assert drawn == ["1"] * (2 * len(store))
    lit = page.eval_on_selector("canvas.overlay", """c => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i] + d[i + 1] + d[i + 2]; return s; }""")
    assert lit > 0
    assert row_ids(page) == list(store.ids)
    page.screenshot(path=str(tmp_path / "store-report.png"))
    target = os.environ.get("ATTRIBKIT_REPORT_SCREENSHOT")
    if target:
        shutil.copy(tmp_path / "store-report.png", target)

    # clicking a metric's header sorts the rows by it, again reverses them
    scores = dict(zip(store.ids, store.metrics["gradcam"]["deletion_auc"]))
    header = page.locator('th[data-key="gradcam:deletion_auc"] button')
    header.click()
    ascending = sorted(store.ids, key=lambda i: (scores[i], list(store.ids).index(i)))
    assert row_ids(page) == ascending != list(store.ids)
    assert page.get_attribute('th[data-key="gradcam:deletion_auc"]', "aria-sort") == "ascending"
    header.press("Enter")  # a focusable button: the keyboard sorts too
    values = [scores[i] for i in row_ids(page)]
    assert values == sorted(values, reverse=True)

    # filtering by class hides the other rows; a method can be hidden
    page.select_option("#class-filter", "dog")
    labels = dict(zip(store.ids, (CLASSES[i] for i in store.labels)))
    assert sorted(shown_ids(page)) == sorted(i for i in store.ids if labels[i] == "dog")
    assert page.inner_text("#count") == f"showing 4 of {len(store)} images"
    page.select_option("#class-filter", "")
    assert len(shown_ids(page)) == len(store)
    page.uncheck('input[data-method-toggle="saliency"]')
    assert page.locator('#images td[data-m="saliency"]:visible').count() == 0
    assert page.locator('#images td[data-m="gradcam"]:visible').count() == 2 * len(store)
    page.check('input[data-method-toggle="saliency"]')

    # clicking a map opens the large view: heat map alone, blended, histogram
    first = row_ids(page)[0]
    page.locator(f'#images tr[data-image-id="{first}"] td[data-m="gradcam"] button.cell').click()
    assert page.is_visible("#viewer")
    assert page.inner_text("#viewer-title") == first
    assert page.get_attribute('#viewer .tabs button[data-method="gradcam"]', "aria-pressed") == "true"
    assert page.locator("#view-hist rect").count() == 24
    heat = page.eval_on_selector("#view-heat", "c => c.toDataURL().length")
    assert heat > 2000
    page.screenshot(path=str(tmp_path / "large-view.png"))
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#viewer-title") == row_ids(page)[1]
    page.keyboard.press("Escape")
    assert not page.is_visible("#viewer")
    # by keyboard: a picture is a button; Enter opens it
    page.locator("#images tbody tr button.cell").first.focus()
    page.keyboard.press("Enter")
    assert page.is_visible("#viewer")
    page.keyboard.press("Escape")

    assert not problems, problems
    assert requests == [path.as_uri()], requests  # nothing but the file itself
    page.close()


def test_bench_report_in_chromium(browser, tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(fake_records()))
    path = ak.write_report(tmp_path)
    page, problems, requests = open_page(browser, path)
    methods = "rows => rows.map(r => r.dataset.method)"
    assert page.eval_on_selector_all("#metrics tbody tr", methods) == ["saliency", "gradcam", "random"]
    page.click('th[data-key="ratio"] button')
    assert page.eval_on_selector_all("#metrics tbody tr", methods) == ["gradcam", "random", "saliency"]
    page.click('th[data-key="insertion_auc"] button')
    page.click('th[data-key="insertion_auc"] button')
    assert page.eval_on_selector_all("#metrics tbody tr", methods) == ["saliency", "gradcam", "random"]
    widths = page.eval_on_selector_all("svg.chart", "svgs => svgs.map(s => s.getBoundingClientRect().width)")
    assert len(widths) == 4 and min(widths) > 100
    page.screenshot(path=str(tmp_path / "bench-report.png"), full_page=True)
    assert not problems, problems
    assert requests == [path.as_uri()], requests
    page.close()

