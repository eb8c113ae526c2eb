"""attribkit.models: torchvision:NAME, timm:NAME, package.module:factory, and their weights."""

import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from attribkit.errors import DownloadError, MissingDependencyError, ModelLoadError
from attribkit.models import load_model, load_state_file, open_model

TORCHVISION_SMALL = "torchvision:mobilenet_v3_small"


def tiny():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))


def not_a_module():
    return lambda x: x


class Touch:
    """Unpickling this creates ``path``: proof that a refused file ran no code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def no_network(monkeypatch, tmp_path):
    """An empty torch hub cache and a download that fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def refuse(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def served_from_random_init(monkeypatch):
    """torchvision's download returns a random state dict of the right architecture."""
    import torchvision.models._api as api

    def state_dict(url, *args, **kwargs):
        return torchvision_builder().state_dict()

    monkeypatch.setattr(api, "load_state_dict_from_url", state_dict)


def torchvision_builder():
    import torchvision

    return torchvision.models.mobilenet_v3_small()


# ------------------------------------------------------------------ specs


def test_spec_without_a_source_is_an_error():
    with pytest.raises(ModelLoadError, match="torchvision:NAME, timm:NAME, hf:PATH or package.module:factory"):
        load_model("resnet18")


def test_factory_model_is_built_in_eval_mode_without_a_note():
    notes = []
    loaded = open_model("tests.test_models:tiny", log=notes.append)
    assert isinstance(loaded.model, torch.nn.Sequential) and not loaded.model.training
    assert loaded.weights == "factory" and loaded.class_names is None and notes == []


@pytest.mark.parametrize("spec, message", [
    ("tests.no_such_module:tiny", "cannot import 'tests.no_such_module'"),
    ("tests.test_models:tiyn", "has no callable 'tiyn'.*did you mean tiny"),
    ("tests.test_models:not_a_module", "returned a function, not a torch.nn.Module"),
])
def test_factory_errors_name_the_problem(spec, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(spec)


def test_unknown_torchvision_model_suggests_names():
    with pytest.raises(ModelLoadError, match="unknown model 'torchvision:resnt18'; did you mean resnet18"):
        load_model("torchvision:resnt18")


def test_torchvision_random_weights_say_so():
    notes = []
    loaded = open_model(TORCHVISION_SMALL, log=notes.append)
    assert loaded.weights == "random" and loaded.class_names is None
    assert notes == [(f"note: {TORCHVISION_SMALL} has random weights; pass weights DEFAULT for the "
                      "pretrained ones, or a state-dict file")]


@pytest.mark.parametrize("weights", ["DEFAULT", "IMAGENET1K_V1", "MobileNet_V3_Small_Weights.IMAGENET1K_V1"])
def test_torchvision_weights_names_carry_class_names(monkeypatch, weights):
    served_from_random_init(monkeypatch)
    loaded = open_model(TORCHVISION_SMALL, weights)
    assert loaded.weights == "MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert len(loaded.class_names) == 1000 and loaded.class_names[1] == "goldfish"


def test_default_weights_offline_is_one_clear_error(monkeypatch, tmp_path):
    no_network(monkeypatch, tmp_path)
    with pytest.raises(DownloadError) as caught:
        load_model(TORCHVISION_SMALL, "DEFAULT")
    message = str(caught.value)
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    assert "could not download MobileNet_V3_Small_Weights.IMAGENET1K_V1" in message
    assert "Temporary failure in name resolution" in message
    assert f"put that file at {cached}" in message and "local state-dict file" in message
    assert "\n" not in message


# ------------------------------------------------------------------ weights files


def test_missing_weights_file_lists_what_is_accepted():
    with pytest.raises(ModelLoadError) as caught:
        load_model(TORCHVISION_SMALL, "missing.pt")
    assert "weights 'missing.pt' for torchvision:mobilenet_v3_small: no such file" in str(caught.value)
    assert "accepted: IMAGENET1K_V1, DEFAULT, an existing state-dict file" in str(caught.value)


def test_factory_accepts_only_a_file(tmp_path):
    with pytest.raises(ModelLoadError, match="accepted: an existing state-dict file"):
        load_model("tests.test_models:tiny", "DEFAULT")
    with pytest.raises(ModelLoadError, match="a folder"):
        load_model("tests.test_models:tiny", str(tmp_path))


def test_state_dict_file_is_loaded(tmp_path):
    saved = tiny()
    torch.save(saved.state_dict(), tmp_path / "w.pt")
    loaded = open_model("tests.test_models:tiny", str(tmp_path / "w.pt"))
    assert loaded.weights == f"file {tmp_path / 'w.pt'}"
    assert torch.equal(loaded.model[0].weight, saved[0].weight)


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"weight": Touch(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelLoadError) as caught:
        load_state_file(tiny(), tmp_path / "evil.pt")
    assert not marker.exists()
    assert "is not a plain state dict: it holds pickled objects (" in str(caught.value)
    assert "torch.load(weights_only=True) refuses" in str(caught.value)


def test_a_saved_module_is_named_with_the_resave_recipe(tmp_path):
    torch.save(tiny(), tmp_path / "full.pt")
    with pytest.raises(ModelLoadError) as caught:
        load_model("tests.test_models:tiny", str(tmp_path / "full.pt"))
    message = str(caught.value)
    assert "it holds pickled objects (torch.nn.modules.container.Sequential)" in message
    assert f"torch.load('{tmp_path / 'full.pt'}', weights_only=False)" in message
    assert "torch.save(model.state_dict(), 'state_dict.pt')" in message


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty or truncated"),
    (b"\x89PNG\r\n\x1a\n not weights", "cannot be read by torch.load"),
])
def test_unreadable_files_are_named(tmp_path, content, message):
    (tmp_path / "w.pt").write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        load_state_file(tiny(), tmp_path / "w.pt")


def test_mismatched_keys_are_named(tmp_path):
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    torch.save(other.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError) as caught:
        load_state_file(tiny(), tmp_path / "w.pt")
    assert "2 missing keys: 4.weight, 4.bias; 2 unexpected keys: 2.weight, 2.bias" in str(caught.value)


def test_wrong_shapes_are_named(tmp_path):
    wide = tiny()
    wide[4] = torch.nn.Linear(4, 10)
    torch.save(wide.state_dict(), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match=r"4.weight is \(10, 4\) in the file, \(3, 4\) in the model"):
        load_state_file(tiny(), tmp_path / "w.pt")


def test_a_tensor_is_not_a_state_dict(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "w.pt")
    with pytest.raises(ModelLoadError, match="holds a Tensor, not a state dict"):
        load_state_file(tiny(), tmp_path / "w.pt")


# ------------------------------------------------------------------ timm


def test_timm_model_with_random_init():
    pytest.importorskip("timm")
    notes = []
    loaded = open_model("timm:resnet10t", log=notes.append)
    assert loaded.weights == "random" and "timm:resnet10t has random weights" in notes[0]
    assert loaded.model(torch.rand(1, 3, 32, 32)).shape == (1, 1000)


def test_timm_pretrained_carries_imagenet_names(monkeypatch):
    timm = pytest.importorskip("timm")
    create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained: create(name, pretrained=False))
    loaded = open_model("timm:resnet10t", "DEFAULT")
    assert loaded.class_names[1] == "goldfish" and loaded.weights == "timm pretrained resnet10t"


def test_timm_download_failure_is_a_download_error(monkeypatch):
    timm = pytest.importorskip("timm")

    def offline(name, pretrained):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(DownloadError, match="could not download the timm weights of resnet10t"):
        load_model("timm:resnet10t", "DEFAULT")


def test_unknown_timm_model_suggests_names():
    pytest.importorskip("timm")
    with pytest.raises(ModelLoadError, match="did you mean resnet10t"):
        load_model("timm:resnet10")


def test_timm_missing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(MissingDependencyError, match="timm:resnet10t needs timm: pip install timm"):
        load_model("timm:resnet10t")


def test_importing_models_and_the_cli_and_version_do_not_import_torch():
    code = ("import sys, attribkit.models, attribkit.tables, attribkit.cli\n"
            "try:\n"
            "    attribkit.cli.main(['--version'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("attribkit ")
