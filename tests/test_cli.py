import json
import re
import sys
import urllib.error
from importlib.metadata import version

import numpy as np
import pytest
import torch
from matplotlib.image import imread, imsave

import attribkit
from attribkit import cli
from attribkit.cli import main
from attribkit.commands.explain import read_images
from attribkit.demo import MIN_SIDE, make_scene
from attribkit.images import denormalize


def test_methods_json_has_every_column(capsys):
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    sal = rows["saliency"]
    assert sal["family"] == "gradient" and sal["plugin"] == "attribkit.families.gradient"
    assert sal["options"] == {"abs": True, "take_max": False}
    assert rows["example.activation_map"]["plugin"] == "example"


def test_methods_table(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # piped: every column (a test worker may set COLUMNS)
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "aliases", "family", "needs", "output", "inputs", "sign",
                                           "plugin", "description"]
    assert "vanilla_gradient,gradient" in out
    saliency = next(line for line in out.splitlines() if line.startswith("saliency "))
    assert saliency.endswith("gradient of the target score w.r.t. the input")


def test_methods_name_shows_every_field(capsys):
    assert main(["methods", "grad-cam"]) == 0  # an alias, spelled loosely
    lines = capsys.readouterr().out.splitlines()
    fields = {line.split()[0]: line.split(None, 1)[1] for line in lines if not line.startswith(" ")}
    assert list(fields) == ["name", "aliases", "family", "needs", "output", "inputs", "sign", "options",
                            "reference", "description", "plugin"]
    assert fields["inputs"] == "images"
    assert fields["name"] == "gradcam" and fields["options"] == "relu = True"
    assert fields["reference"].startswith("Selvaraju et al. 2017")
    assert fields["plugin"] == "attribkit.families.cam"


def test_methods_name_lists_options_one_a_line(capsys):
    assert main(["methods", "smoothgrad"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"options +abs = True\n +take_max = False\n +n_samples = 25", out)


def test_methods_name_json_and_unknown_name(capsys):
    assert main(["methods", "saliency", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["description"] == "gradient of the target score w.r.t. the input"
    assert main(["methods", "salincy"]) == 2
    assert "did you mean 'saliency'" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"attribkit {attribkit.__version__}\n"
    assert version("attribkit") == attribkit.__version__


def test_explain_writes_a_heatmap_and_the_values(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    torch.save(model.state_dict(), tmp_path / "w.pt")
    image = tmp_path / "scene.png"
    imsave(image, make_scene(64))
    code = main(["explain", str(image), "--model", "tests.test_cli:small_model", "--weights",
                 str(tmp_path / "w.pt"), "--method", "saliency", "--target", "2", "--size", "32",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert "target=2" in capsys.readouterr().out
    png = imread(tmp_path / "out" / "scene_saliency.png")
    values = np.load(tmp_path / "out" / "scene_saliency.npy")
    assert png.shape[:2] == (32, 32) and values.shape == (3, 32, 32)
    assert values.max() > 0


def small_model():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))


@pytest.fixture
def scene(tmp_path):
    image = tmp_path / "scene.png"
    imsave(image, make_scene(32))
    return image


def explain_small(scene, *extra):
    return main(["explain", str(scene), "--model", "tests.test_cli:small_model", "--size", "32",
                 "--out", str(scene.parent / "out"), *extra])


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_missing_weights_file_is_an_error(scene, capsys):
    assert explain_small(scene, "--weights", "missing.pt") == 2
    err = one_error_line(capsys)
    assert err.startswith("attribkit: error: weights 'missing.pt' for tests.test_cli:small_model: no such file")
    assert not (scene.parent / "out").exists()


def test_pickled_model_file_is_refused_with_advice(scene, capsys):
    torch.save(small_model(), scene.parent / "full.pt")
    assert explain_small(scene, "--weights", str(scene.parent / "full.pt")) == 2
    err = one_error_line(capsys)
    assert "not a plain state dict" in err and "weights_only=True" in err and "UnpicklingError" not in err


def test_state_dict_that_does_not_fit_names_keys(scene, capsys):
    torch.save(torch.nn.Linear(3, 3).state_dict(), scene.parent / "linear.pt")
    assert explain_small(scene, "--weights", str(scene.parent / "linear.pt")) == 2
    err = one_error_line(capsys)
    assert "4 missing keys: 0.weight, 0.bias, 4.weight, 4.bias; 2 unexpected keys: weight, bias" in err


def test_default_weights_offline_is_one_line(scene, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    code = main(["explain", str(scene), "--model", "torchvision:mobilenet_v3_small", "--weights", "DEFAULT",
                 "--size", "32", "--out", str(tmp_path / "out")])
    assert code == 2
    err = one_error_line(capsys)
    assert "could not download MobileNet_V3_Small_Weights.IMAGENET1K_V1" in err
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth") in err


def test_class_names_of_the_weights_are_printed(scene, capsys, monkeypatch, tmp_path):
    import torchvision
    import torchvision.models._api as api

    monkeypatch.setattr(api, "load_state_dict_from_url",
                        lambda url, *a, **k: torchvision.models.mobilenet_v3_small().state_dict())
    code = main(["explain", str(scene), "--model", "torchvision:mobilenet_v3_small", "--weights", "DEFAULT",
                 "--target", "1", "--size", "32", "--out", str(tmp_path / "out")])
    assert code == 0
    assert "target=1 (goldfish)" in capsys.readouterr().out


def test_timm_model_with_random_init(scene, capsys, tmp_path):
    pytest.importorskip("timm")
    code = main(["explain", str(scene), "--model", "timm:resnet10t", "--size", "32",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    assert "timm:resnet10t has random weights" in capsys.readouterr().err
    assert np.load(tmp_path / "out" / "scene_saliency.npy").shape == (3, 32, 32)


def test_factory_module_in_the_current_folder(scene, capsys, monkeypatch, tmp_path):
    (tmp_path / "my_net.py").write_text(
        "import torch\n"
        "def build():\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1),"
        " torch.nn.Flatten())\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "my_net", raising=False)
    assert main(["explain", str(scene), "--model", "my_net:build", "--size", "32", "--out", "out"]) == 0
    assert "scene.png: out/scene_saliency.png target=" in capsys.readouterr().out


def test_help_says_a_factory_runs_code_and_images_are_cropped(capsys):
    with pytest.raises(SystemExit):
        main(["explain", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "that runs the module's code, so name only code you trust" in help_text
    assert "centre-cropped to SIZExSIZE" in help_text and "--resize-only" in help_text


def test_missing_image_is_one_line(scene, capsys):
    assert main(["explain", "nope.png", str(scene), "gone.jpg", "--model", "tests.test_cli:small_model"]) == 2
    assert one_error_line(capsys) == "attribkit: error: no such image file or folder: nope.png, gone.jpg\n"


def test_unreadable_image_is_one_line(tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not an image")
    assert main(["explain", str(tmp_path / "notes.png"), "--model", "tests.test_cli:small_model"]) == 2
    assert "cannot read image" in one_error_line(capsys)


def test_crop_is_noted_and_resize_only_keeps_the_whole_image(tmp_path, capsys):
    picture = np.full((32, 64, 3), 0.5, dtype=np.float32)
    picture[:, :8] = (0.0, 1.0, 0.0)  # a green band at the left edge, outside the centre crop
    imsave(tmp_path / "wide.png", picture)
    cropped = denormalize(read_images([str(tmp_path / "wide.png")], 32, resize_only=False))
    assert "centre-cropped to 32x32; --resize-only keeps the whole image" in capsys.readouterr().err
    squashed = denormalize(read_images([str(tmp_path / "wide.png")], 32, resize_only=True))
    assert capsys.readouterr().err == ""
    assert cropped.shape == squashed.shape == (1, 3, 32, 32)
    assert squashed[0, 1, :, 0].min() > 0.9 and cropped[0, 1, :, 0].max() < 0.6
    assert explain_small(tmp_path / "wide.png", "--resize-only") == 0


@pytest.mark.parametrize("raised, message", [
    (KeyboardInterrupt(), "attribkit: interrupted\n"),
    (KeyboardInterrupt("interrupted: partial report in out/report.md"),
     "attribkit: interrupted: partial report in out/report.md\n"),
    (FileNotFoundError(2, "No such file or directory", "data/x.png"),
     "attribkit: error: No such file or directory: data/x.png\n"),
])
def test_interrupts_and_missing_files_are_one_line(monkeypatch, capsys, raised, message):
    def command(args):
        raise raised

    monkeypatch.setattr(cli, "cmd_methods", command)
    code = main(["methods"])
    assert code == (130 if isinstance(raised, KeyboardInterrupt) else 2)
    assert capsys.readouterr().err == message


def test_explain_reports_attribkit_errors_cleanly(tmp_path, capsys):
    image = tmp_path / "scene.png"
    imsave(image, make_scene(32))
    code = main(["explain", str(image), "--model", "tests.test_cli:small_model", "--method",
                 "saliency", "--target", "7", "--size", "32", "--out", str(tmp_path / "out")])
    assert code == 2
    assert "target 7 is out of range for a model with 3 outputs" in capsys.readouterr().err


def test_demo_prints_the_table_and_writes_every_method(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--images", "2", "--bench-images", "8"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["name", "aliases", "family"]
    assert "test accuracy" in out and "| gradcam |" in out
    for name in ("saliency", "gradcam", "example.activation_map", "compare"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    height, width = imread(tmp_path / "gradcam.png").shape[:2]  # 2 images, each beside its map
    assert height >= 2 * MIN_SIDE and width >= 2 * MIN_SIDE
    assert (tmp_path / "bench" / "report.md").exists()


def test_bench_writes_the_html_report_beside_report_md(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--model", "attribkit.testing:TinyCNN", "--methods", "random", "--metrics",
                 "deletion_auc", "--n-images", "4", "--no-progress", "--out", str(out)]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'data-method="random"' in page and "<svg" in page


def test_report_help_names_both_kinds_of_run(capsys):
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    text = capsys.readouterr().out
    assert "RUN.zarr" in text and "bench" in text and "--images" in text
