import json

import numpy as np
import torch
from matplotlib.image import imread, imsave

from attribkit.cli import main
from attribkit.demo import make_scene


def test_methods_json_has_every_column(capsys):
    assert main(["methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    sal = rows["saliency"]
    assert sal["family"] == "gradient" and sal["plugin"] == "attribkit.families.gradient"
    assert sal["options"] == {"abs": True, "take_max": False}
    assert rows["example.activation_map"]["plugin"] == "example"


def test_methods_table(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "aliases", "family", "needs", "output", "sign", "plugin"]
    assert "vanilla_gradient,gradient" in out


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


def test_explain_reports_attribkit_errors_cleanly(tmp_path, capsys):
    image = tmp_path / "scene.png"
    imsave(image, make_scene(32))
    code = main(["explain", str(image), "--model", "tests.test_cli:small_model", "--method",
                 "saliency", "--target", "7", "--size", "32", "--out", str(tmp_path)])
    assert code == 2
    assert "target 7 is out of range for a model with 3 outputs" in capsys.readouterr().err


def test_demo_prints_the_table_and_writes_every_method(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--images", "2", "--bench-images", "8"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["name", "aliases", "family"]
    assert "test accuracy" in out and "| gradcam |" in out
    for name in ("saliency", "gradcam", "example.activation_map", "compare"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    assert (tmp_path / "bench" / "report.md").exists()
