"""The HTML report (store and bench), read as HTML: one self-contained file with every row,
map, metric and chart; the CLI's ``report`` command. The browser test is test_report_browser.py."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import attribkit as ak
from attribkit.cli import main
from tests.dataset_support import Numbered, small_model

pytest.importorskip("zarr")
ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog", "owl")


def make_folder(root: Path, per_class: int = 4, size: int = 24) -> Path:
    """Image files in class folders: a coloured disc at a place that depends on the index."""
    yy, xx = np.mgrid[0:size, 0:size + 8] / size
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            k = c * per_class + i
            pixels = np.stack([0.2 + 0.6 * yy, 0.3 + 0.2 * xx, 0.6 - 0.3 * yy], -1)
            pixels[(yy - 0.3 - 0.04 * i) ** 2 + (xx - 0.2 - 0.1 * k % 1) ** 2 < 0.04] = (0.95, 0.2, 0.1)
            Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(root / name / f"{k:02d}.png")
    return root


@pytest.fixture(scope="module")
def folder_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    folder = make_folder(tmp / "images")
    store = ak.explain_dataset(small_model(), ak.image_folder(folder, size=16), ["saliency", "gradcam"],
                               tmp / "run.zarr", batch_size=5, metrics=["deletion_auc"], progress=False)
    return store, folder


@pytest.fixture(scope="module")
def dataset_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-dataset")
    data = Numbered(7)
    store = ak.explain_dataset(small_model(), data, ["saliency", "gradcam"], tmp / "data.zarr", batch_size=4,
                               metrics=["deletion_auc"], progress=False)
    return store, data


class Page(HTMLParser):
    """Tags with their attributes, and every URL an element would load."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.tags if t == tag and all(a.get(k.replace("_", "-")) == v
                                                              for k, v in attrs.items())]


def loaded_urls(page: Page) -> list[str]:
    return [a[key] for _, a in page.tags for key in ("src", "href") if a.get(key)]


def report_data(text: str) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', text, re.S)
    return json.loads(found.group(1))


def test_store_report_is_one_self_contained_file_with_a_row_per_image(folder_store, tmp_path):
    store, folder = folder_store
    path = ak.write_report(store, tmp_path / "r.html")
    text = path.read_text()
    page = Page(text)
    rows = page.find("tr")[1:]  # the header row first
    assert [r["data-image-id"] for r in rows] == list(store.ids)
    assert [r["data-label"] for r in rows] == [CLASSES[i] for i in store.labels]
    # every picture inline, nothing to fetch (the page's policy allows data: images only)
    assert all(url.startswith("data:") for url in loaded_urls(page))
    assert len(page.find("img", **{"class": "picture"})) == len(store)
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    csp = page.find("meta", http_equiv="Content-Security-Policy")[0]["content"]
    assert "default-src 'none'" in csp and "img-src data:" in csp
    # one map per image and method, one scale per method, the metric values as sort keys
    data = report_data(text)
    assert all(set(row["maps"]) == {"saliency", "gradcam"} for row in data["rows"])
    deletion = store.metrics["gradcam"]["deletion_auc"]
    cells = page.find("td", data_key="gradcam:deletion_auc")
    np.testing.assert_allclose([float(c["data-value"]) for c in cells], deletion, rtol=1e-6)
    assert data["methods"]["gradcam"]["scale"] > 0 and data["methods"]["gradcam"]["layer"] == store.layers["gradcam"]
    assert len(page.find("span", role="img")) == 2  # a colour bar per method
    assert len(page.find("canvas", **{"class": "overlay"})) == 2 * len(store)


def test_maps_share_one_scale_per_method(folder_store):
    from attribkit.report.store import method_maps

    store, _ = folder_store
    rows = np.arange(len(store))
    uris, hists, scale = method_maps(store, "saliency", rows, map_size=64, outlier_perc=0)
    summed = np.abs(np.asarray(store["saliency"][:]).sum(1))
    assert scale == pytest.approx(summed.max(), rel=1e-5)  # no outliers clipped: the largest value
    grey = [np.asarray(Image.open(__import__("io").BytesIO(__import__("base64").b64decode(u.split(",")[1]))))
            for u in uris]
    brightest = int(np.argmax(summed.reshape(len(store), -1).max(1)))
    assert grey[brightest].max() == 255 and all(g.max() <= 255 for g in grey)
    assert hists[0]["counts"] == np.histogram(np.asarray(store["saliency"][0]).sum(0), bins=24)[0].tolist()


def test_the_pictures_are_what_the_model_saw(folder_store):
    """The folder's images, centre-cropped as the run's to_input did."""
    from attribkit.report.pictures import folder_picture

    store, folder = folder_store
    assert store.meta["images"] == {"root": str(folder.resolve()), "crop": True}
    picture = folder_picture(folder / store.ids[0], 16, 16)
    seen = ak.to_display(ak.to_input(ak.load_image(folder / store.ids[0]), 16))[0]
    assert picture.shape == (16, 16, 3) and np.abs(picture - seen).mean() < 0.03


def test_dataset_store_with_images_in_python_and_without(dataset_store, tmp_path):
    store, data = dataset_store
    page = Page(ak.write_report(store, tmp_path / "with.html", images=data, class_names=list("abcde")).read_text())
    assert len(page.find("img", **{"class": "picture"})) == 7
    assert [r["data-label"] for r in page.find("tr")[1:]] == [("abcde")[data.label(i)] for i in range(7)]
    text = ak.write_report(store.path, tmp_path / "without.html").read_text()
    assert "maps are drawn alone" in text and not Page(text).find("img", **{"class": "picture"})
    with pytest.raises(ak.InputError, match="made from a dataset"):
        ak.write_report(store, tmp_path / "x.html", images=tmp_path)


def test_report_size_stays_small(folder_store, tmp_path):
    store, _ = folder_store
    size = ak.write_report(store, tmp_path / "s.html").stat().st_size
    assert size < 12_000 * len(store) + 60_000, size  # thumbnails: a few kB per image and method


def test_cli_report_of_a_store(folder_store, tmp_path, capsys):
    store, folder = folder_store
    out = tmp_path / "cli.html"
    assert main(["report", str(store.path), "--out", str(out), "--images", str(folder), "--limit", "3"]) == 0
    assert str(out) in capsys.readouterr().out
    assert len(Page(out.read_text()).find("tr")) == 4
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "neither a dataset store" in capsys.readouterr().err


def fake_records():
    records = []
    for m, (d, r) in {"saliency": (0.2, 1.8), "gradcam": (0.25, 0.7), "random": (0.3, 1.1)}.items():
        curve = {"x": [0, 0.5, 1], "mean": [0.9, d, 0.1]}
        records += [
            {"run": "r", "method": m, "metric": "deletion_auc", "higher_is_better": False, "mean": d, "sem": 0.01,
             "n": 8, "curves": curve},
            {"run": "r", "method": m, "metric": "insertion_auc", "higher_is_better": True, "mean": 1 - d,
             "sem": 0.01, "n": 8, "curves": curve},
            {"run": "r", "method": m, "metric": "cascading_randomization", "higher_is_better": False,
             "mean": d, "sem": 0.0, "n": 8, "curves": {"layers": ["fc", "conv2"], "spearman_abs": [0.8, d]}},
            {"run": "r", "method": m, "metric": "speed", "ratio": r, "floor": "forward", "images_per_s": 100 / r,
             "median_ms": 10 * r, "peers": {"captum": {"ratio": r * 2}} if m == "saliency" else {}},
        ]
    records.append({"run": "r", "method": "random", "metric": "pointing_game", "error": "ValueError: no masks"})
    return records


def test_bench_report_tables_and_svg_charts(tmp_path, capsys):
    (tmp_path / "results.json").write_text(json.dumps(fake_records()))
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "report.html").read_text()
    page = Page(text)
    assert [r["data-method"] for r in page.find("tr")[1:]] == ["saliency", "gradcam", "random"]
    assert {a["data-key"] for a in page.find("th") if "data-key" in a} >= {
        "method", "deletion_auc", "insertion_auc", "cascading_randomization", "ratio"}
    assert 'class="num best" data-key="deletion_auc" data-value="0.2"' in text
    assert text.count("<svg") == 4  # speed, deletion, insertion, sanity
    assert "saliency (captum)" in text and "+conv2" in text and "ValueError: no masks" in text
    # the same from results.jsonl alone (an interrupted run)
    (tmp_path / "results.json").unlink()
    (tmp_path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in fake_records()) + '\n{"torn')
    assert Page(ak.write_report(tmp_path, tmp_path / "again.html").read_text()).find("tr")[1]["data-method"] == "saliency"


def test_write_report_is_exported_beside_the_report_package():
    import attribkit.report
    import attribkit.report.store as store_module

    assert ak.write_report is attribkit.report.write_report
    assert store_module.store_report.__module__ == "attribkit.report.store"


def test_an_unreadable_item_keeps_its_row_and_says_why(tmp_path):
    store = ak.explain_dataset(small_model(), Numbered(6, unreadable=(2,)), ["saliency"], tmp_path / "u.zarr",
                               progress=False)
    text = ak.write_report(store, tmp_path / "u.html", images=Numbered(6)).read_text()
    assert [r["data-image-id"] for r in Page(text).find("tr")[1:]] == [str(i) for i in range(6)]
    assert '<div class="wrong">item 2 is damaged</div>' in text
    assert "saliency" not in report_data(text)["rows"][2]["maps"]
