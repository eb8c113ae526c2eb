"""Labels are compared with predictions only when both name the same classes (issue 28): class
folders explained with a model of other classes show no red "class 238" beside every label, and
the page says why; folder names that are among the model's class names are compared by name."""

import re

import numpy as np
import pytest
import torch
from PIL import Image

import attribkit as ak
from attribkit.cli import main
from attribkit.report.classes import class_spaces
from attribkit.report.page import esc
from attribkit.testing import TinyCNN

pytest.importorskip("zarr")

# ------------------------------------------------------------------ the rules, on plain lists


def test_the_same_list_or_integer_labels_compare_index_with_index():
    for names in (["cat", "dog"], None):
        spaces = class_spaces(names, names, np.array([0, 1, -1]), np.array([0, 0, 1]))
        assert spaces.to_model == {0: 0, 1: 1} and spaces.note == ""
        assert [spaces.wrong(label, p) for label, p in ((0, 0), (1, 0), (-1, 1))] == [False, True, False]
    assert class_spaces(None, ["a", "b"], np.array([1]), np.array([0])).label(1) == "b"


def test_folder_names_among_the_model_classes_are_compared_by_name():
    model = ["background", "Goldfish", "tench", "great white shark"]
    spaces = class_spaces(["great_white_shark", "goldfish", "tench"], model, np.array([0, 1, 2]),
                          np.array([3, 2, 2]))
    assert spaces.to_model == {0: 3, 1: 1, 2: 2}
    assert [spaces.wrong(label, p) for label, p in ((0, 3), (1, 2), (2, 2))] == [False, True, False]
    assert spaces.label(0) == "great_white_shark" and spaces.model_class(3) == "great white shark"
    assert "compared with predictions by name" in spaces.note


def test_folder_names_that_are_not_model_classes_are_not_compared():
    spaces = class_spaces(["astronaut", "tench"], ["tench", "goldfish"], np.array([0, 1]), np.array([1, 0]))
    assert spaces.to_model is None and not spaces.wrong(0, 1) and not spaces.wrong(1, 1)
    assert "'astronaut' is not one of the model's 2 class names" in spaces.note
    assert spaces.model_class(1) == "goldfish" and spaces.label(0) == "astronaut"


def test_without_model_names_predictions_beyond_the_folders_are_not_compared():
    spaces = class_spaces(["astronaut"], None, np.array([0, 0]), np.array([238, 0]))
    assert spaces.to_model is None and not spaces.wrong(0, 238)
    assert spaces.model_class(238) == "class 238"  # not a folder's name
    assert "the model predicts class 238, beyond the data's 1 classes ('astronaut')" in spaces.note
    # every prediction one of the folders: a model trained on them, in ImageFolder's order
    spaces = class_spaces(["cat", "dog"], None, np.array([0, 1]), np.array([1, 1]))
    assert spaces.to_model == {0: 0, 1: 1} and spaces.wrong(0, 1) and spaces.model_class(1) == "dog"
    assert "prediction N is read as the data's N-th class" in spaces.note


# ------------------------------------------------------------------ the page

FOLDERS = ("great_white_shark", "hammerhead")  # ImageNet classes 2 and 4


@pytest.fixture(scope="module")
def imagenet_folder_store(tmp_path_factory):
    """Class folders named like ImageNet classes, explained by a (random) 1000-class model."""
    tmp = tmp_path_factory.mktemp("classes")
    rng = np.random.default_rng(0)
    for name in FOLDERS:
        (tmp / "images" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp / "images" / name / f"{i}.png")
    torch.manual_seed(0)
    model = TinyCNN(classes=1000).eval()
    with torch.no_grad():  # every image predicted as ImageNet's great white shark (class 2)
        model.fc.bias[2] = 100.0
    store = ak.explain_dataset(model, ak.image_folder(tmp / "images", size=16), ["saliency"], tmp / "run.zarr",
                               batch_size=6, progress=False)
    return store


def wrong_predictions(text: str) -> list[str]:
    return re.findall(r'data-key="prediction" data-value="([^"]*)" class="wrong"', text)


def test_the_page_marks_nothing_and_says_why_without_the_model_names(imagenet_folder_store, tmp_path):
    store = imagenet_folder_store
    assert set(store.predictions.classes) == {2}  # beyond the two folders
    text = ak.write_report(store, tmp_path / "r.html").read_text()
    assert wrong_predictions(text) == []
    assert "Labels are not compared with predictions: the model predicts class" in text
    assert 'id="wrong-only"' not in text  # no "misclassified only" filter when nothing is compared


def test_with_imagenet_names_folders_are_compared_by_name(imagenet_folder_store, tmp_path, capsys):
    from attribkit.images import imagenet_classes

    store = imagenet_folder_store
    names = list(imagenet_classes())
    expected = [names[p] for label, p in zip(store.labels, store.predictions.classes)
                if names.index(FOLDERS[label].replace("_", " ")) != p]
    assert main(["report", str(store.path), "--model-classes", "imagenet", "--out", str(tmp_path / "r.html")]) == 0
    text = (tmp_path / "r.html").read_text()
    assert wrong_predictions(text) == expected == ["great white shark"] * 3  # the hammerheads
    assert "compared with predictions by name" in text and 'id="wrong-only"' in text
    # a file of names, one a line, does the same
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    assert main(["report", str(store.path), "--model-classes", str(tmp_path / "names.txt"),
                 "--out", str(tmp_path / "s.html")]) == 0
    assert wrong_predictions((tmp_path / "s.html").read_text()) == expected


def test_model_classes_file_errors_are_one_line(imagenet_folder_store, tmp_path, capsys):
    capsys.readouterr()
    assert main(["report", str(imagenet_folder_store.path), "--model-classes", str(tmp_path / "nope.txt")]) == 2
    assert capsys.readouterr().err == f"attribkit: error: no such file of class names: {tmp_path / 'nope.txt'}\n"
    (tmp_path / "blank.txt").write_text("\n\n")
    assert main(["report", str(imagenet_folder_store.path), "--model-classes", str(tmp_path / "blank.txt")]) == 2
    assert "holds no class names" in capsys.readouterr().err


def test_the_names_a_run_recorded_are_used(imagenet_folder_store, tmp_path):
    from attribkit.images import imagenet_classes

    store = imagenet_folder_store
    again = ak.explain_dataset(TinyCNN(classes=1000).eval(), ak.image_folder(store.path.parent / "images", size=16),
                               ["saliency"], tmp_path / "named.zarr", batch_size=6, progress=False,
                               model_classes=list(imagenet_classes()))
    text = ak.write_report(again, tmp_path / "r.html").read_text()
    assert "compared with predictions by name" in text
    names = list(imagenet_classes())
    expected = [names[p] for label, p in zip(again.labels, again.predictions.classes)
                if names.index(FOLDERS[label].replace("_", " ")) != p]
    assert wrong_predictions(text) == expected


def test_explain_dataset_records_the_weights_class_names(tmp_path, monkeypatch, capsys):
    import torchvision
    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url",
                        lambda url, *a, **k: torchvision.models.mobilenet_v3_small().state_dict())
    (tmp_path / "images" / "goldfish").mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "images" / "goldfish" / "a.png")
    assert main(["explain-dataset", str(tmp_path / "images"), "--model", "torchvision:mobilenet_v3_small",
                 "--weights", "DEFAULT", "--size", "32", "--methods", "saliency", "--out", str(tmp_path / "run.zarr"),
                 "--no-progress", "--workers", "0"]) == 0
    store = ak.open_store(tmp_path / "run.zarr")
    assert store.meta["model_classes"] == list(torchvision.models.MobileNet_V3_Small_Weights.DEFAULT.meta["categories"])
    text = ak.write_report(store, tmp_path / "r.html").read_text()
    assert "compared with predictions by name" in text
    predicted = store.meta["model_classes"][int(store.predictions.classes[0])]
    assert f'data-prediction="{esc(predicted)}"' in text
