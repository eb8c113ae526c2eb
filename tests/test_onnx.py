"""Models outside PyTorch, as ``docs/blackbox.md`` describes them: the reference model
exported to ONNX and explained through ONNX Runtime gives the same black-box maps and
the same forward-only metric scores as in PyTorch; the session is only ever fed NumPy
arrays; and what works without torch installed (listing) and what needs it (explaining,
evaluating, even an ONNX model)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.bench.reference import reference_model
from attribkit.bench.synthetic import make_dataset

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# Methods that need only a forward and take any model (Captum's too: the adapter wraps
# a session or a NumPy callable with ak.as_predict)
BLACK_BOX = [s for s in ak.methods() if s.needs == ("forward",)]  # drise needs a Box: test_drise.py
# smaller settings for the many-forward methods, so the test stays quick (a coarser grid,
# never a finer one: captum.shapley_values is exponential in the number of cells)
QUICK = {"n_masks": 32, "n_samples": 4, "grid": 4}


def quick_options(spec):
    return {k: min(v, spec.options[k]) for k, v in QUICK.items() if k in spec.options}
# Metrics that need only a forward or the evidence masks
FORWARD_METRICS = [m.name for m in ak.metrics() if set(m.needs) <= {"forward", "ground_truth"}]


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    model, _ = reference_model()
    data = make_dataset(8, seed=31_000)
    x = torch.from_numpy(data.images)
    path = tmp_path_factory.mktemp("onnx") / "reference.onnx"
    torch.onnx.export(model, (x[:2],), path, input_names=["images"], output_names=["scores"],
                      dynamic_shapes={"x": {0: torch.export.Dim("batch")}}, verbose=False)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return model, session, x, torch.from_numpy(data.labels), torch.from_numpy(data.masks)


def test_scores_agree(subject):
    model, session, x, _, _ = subject
    torch.testing.assert_close(ak.as_predict(session)(x), model(x).detach(), rtol=1e-4, atol=1e-5)


def test_occlusion_maps_agree(subject):
    model, session, x, y, _ = subject
    on_torch = ak.explain(model, x, y, method="occlusion", batch_size=128)
    on_onnx = ak.explain(session, x.numpy(), y, method="occlusion", batch_size=128)
    assert on_onnx.meta["backend"] == "onnxruntime" and isinstance(on_onnx.values, np.ndarray)
    scale = on_torch.values.abs().max().item()
    # float32 on two runtimes: measured 3.4e-7 of the map range (16 images)
    np.testing.assert_allclose(on_onnx.values, on_torch.values.numpy(), rtol=0, atol=1e-5 * scale)


def test_rise_maps_agree(subject):
    pytest.importorskip("attribkit_example")
    model, session, x, y, _ = subject
    on_torch = ak.explain(model, x, y, method="rise", n_masks=128, batch_size=128)
    on_onnx = ak.explain(session, x, y, method="rise", n_masks=128, batch_size=128)
    scale = on_torch.values.abs().max().item()
    torch.testing.assert_close(on_onnx.values, on_torch.values, rtol=0, atol=1e-5 * scale)


def test_forward_only_metrics_agree(subject):
    model, session, x, y, masks = subject
    x, y, masks = x[:4], y[:4], masks[:4]  # every forward metric twice: 4 images are enough
    maps = ak.explain(model, x, y, method="gradcam")
    assert {"deletion_auc", "insertion_auc", "pointing_game"} <= set(FORWARD_METRICS)
    on_torch = ak.evaluate(model, x, maps, metrics=FORWARD_METRICS, masks=masks)
    on_onnx = ak.evaluate(session, x.numpy(), maps, metrics=FORWARD_METRICS, masks=masks)
    for name in FORWARD_METRICS:
        scale = max(1.0, on_torch[name].scores.abs().max().item())  # captum.infidelity: ~60
        torch.testing.assert_close(on_onnx[name].scores, on_torch[name].scores, rtol=0,
                                   atol=1e-5 * scale)


class Recording:
    """An ONNX session that records the type, dtype and layout of everything it is fed."""

    def __init__(self, session):
        self.session, self.feeds = session, []

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def run(self, names, feeds):
        self.feeds += [(type(v), v.dtype, v.flags.c_contiguous) for v in feeds.values()]
        return self.session.run(names, feeds)


@pytest.mark.parametrize("spec", BLACK_BOX, ids=lambda s: s.name)
def test_the_session_is_fed_only_numpy_arrays(subject, spec):
    model, session, x, y, masks = subject
    options = quick_options(spec)
    recording = Recording(session)
    on_onnx = ak.explain(recording, x, y, method=spec.name, **options)
    if spec.name == BLACK_BOX[0].name:  # every forward metric once (the maps' method does not matter)
        scores = ak.evaluate(recording, x, on_onnx, metrics=FORWARD_METRICS, masks=masks)
        assert set(scores) == set(FORWARD_METRICS)
    assert set(recording.feeds) == {(np.ndarray, np.dtype(np.float32), True)}
    on_torch = ak.explain(model, x, y, method=spec.name, **options)
    scale = max(1e-12, on_torch.values.abs().max().item())
    torch.testing.assert_close(on_onnx.values, on_torch.values, rtol=0, atol=1e-5 * scale)


# ------------------------------------------------------------ without torch

WITHOUT_TORCH = """
import sys
sys.modules["torch"] = None  # `import torch` raises ImportError, as when it is not installed
import numpy as np
import attribkit as ak
from attribkit.cli import main

for command in (["methods"], ["metrics"], ["plugins"], ["methods", "occlusion"]):
    assert main(command) == 0, command
assert ak.get_method("occlusion").needs == ("forward",) and ak.get_metric("deletion_auc")
assert ak.methods(family="perturbation") and ak.metrics(kind="faithfulness") and ak.plugins()

def numpy_model(batch):
    return batch.reshape(len(batch), -1)[:, :3]

images = np.zeros((2, 3, 8, 8), np.float32)
for name, call in [
        ("explain", lambda: ak.explain(numpy_model, images, method="occlusion")),
        ("evaluate", lambda: ak.evaluate(numpy_model, images, np.ones((2, 1, 8, 8)), [0, 1])),
        ("as_predict", lambda: ak.as_predict(numpy_model))]:
    try:
        call()
    except ak.MissingDependencyError as exc:
        assert "torch" in str(exc) and "pip install" in str(exc), (name, exc)
    else:
        raise AssertionError(f"{name} ran without torch")
print("ok")
"""


def test_listing_needs_no_torch_and_explaining_an_onnx_or_numpy_model_does():
    out = subprocess.run([sys.executable, "-c", WITHOUT_TORCH], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.endswith("ok\n"), out.stderr
