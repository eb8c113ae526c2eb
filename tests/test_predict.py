"""The predict adapter: PyTorch modules, NumPy callables and ONNX sessions as one
``predict(batch) -> scores``."""

import numpy as np
import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.predict import as_predict


def linear_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()


def test_module_answers_in_the_kind_it_is_asked():
    m = linear_model()
    x = torch.randn(7, 3, 4, 4)
    p = as_predict(m)
    assert p.backend == "torch" and p.module is m
    out = p(x)
    assert isinstance(out, torch.Tensor) and not out.requires_grad
    torch.testing.assert_close(out, m(x).detach(), rtol=0, atol=0)
    out_np = p(x.numpy())
    assert isinstance(out_np, np.ndarray)
    np.testing.assert_array_equal(out_np, out.numpy())


def test_batch_size_chunks_the_calls():
    seen = []

    def scores(batch):
        assert isinstance(batch, np.ndarray)
        seen.append(len(batch))
        return batch.reshape(len(batch), -1)[:, :3] * 2

    x = torch.randn(10, 3, 4, 4)
    out = as_predict(scores, batch_size=4)(x)
    assert seen == [4, 4, 2]
    torch.testing.assert_close(out, x.reshape(10, -1)[:, :3] * 2)


def test_torch_callable():
    m = linear_model()
    p = as_predict(lambda t: m(t), array="torch", batch_size=3)
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(p(x), m(x).detach())


def test_predict_passes_through_and_rechunks():
    p = as_predict(linear_model())
    assert as_predict(p) is p
    assert as_predict(p, batch_size=2).batch_size == 2 and p.batch_size is None


@pytest.mark.parametrize("model, match", [
    (42, "cannot use a int as a model"),
    (lambda b: b[:1, 0, 0, 0], "scores of shape .* for a batch of 4"),
])
def test_bad_models_are_named(model, match):
    with pytest.raises(ak.InputError, match=match):
        as_predict(model)(np.zeros((4, 3, 2, 2), np.float32))


def test_bad_options_are_named():
    with pytest.raises(ak.InvalidOptionError, match="batch_size must be a positive integer"):
        as_predict(linear_model(), batch_size=0)
    with pytest.raises(ak.InvalidOptionError, match="array must be 'numpy' or 'torch'"):
        as_predict(lambda b: b, array="jax")


class FakeSession:
    """Duck-typed stand-in for onnxruntime.InferenceSession."""

    class Arg:
        def __init__(self, name, type_="tensor(float)"):
            self.name, self.type = name, type_

    def __init__(self, inputs, outputs=1):
        self._inputs, self._outputs = inputs, [self.Arg(f"out{i}") for i in range(outputs)]
        self.feeds = []

    def get_inputs(self):
        return self._inputs

    def get_outputs(self):
        return self._outputs

    def run(self, names, feeds):
        self.feeds.append(feeds)
        (x,) = feeds.values()
        return [x.reshape(len(x), -1)[:, :2] + i for i in range(len(self._outputs))]


def test_onnx_session_inputs_and_outputs():
    session = FakeSession([FakeSession.Arg("a"), FakeSession.Arg("images", "tensor(double)")], outputs=2)
    with pytest.raises(ak.InputError, match=r"inputs \['a', 'images'\]; say which"):
        as_predict(session)
    with pytest.raises(ak.InputError, match="no input 'img'"):
        as_predict(session, input_name="img")
    with pytest.raises(ak.InvalidOptionError, match="output=2 but the ONNX model has 2 output"):
        as_predict(session, input_name="images", output=2)
    p = as_predict(session, input_name="images", output=1)
    x = torch.randn(3, 1, 2, 2)
    torch.testing.assert_close(p(x), x.reshape(3, -1)[:, :2].double() + 1)
    assert p.backend == "onnxruntime" and session.feeds[0]["images"].dtype == np.float64
    with pytest.raises(ak.InputError, match="needs a float input"):
        as_predict(FakeSession([FakeSession.Arg("ids", "tensor(int64)")]))


def test_real_onnx_session_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    m = linear_model()
    x = torch.randn(6, 3, 4, 4)
    path = tmp_path / "linear.onnx"
    torch.onnx.export(m, (x,), path, input_names=["images"],
                      dynamic_shapes={"input": {0: torch.export.Dim("batch")}}, verbose=False)
    p = as_predict(ort.InferenceSession(path, providers=["CPUExecutionProvider"]), batch_size=4)
    torch.testing.assert_close(p(x), m(x).detach(), rtol=1e-5, atol=1e-6)


def test_a_torch_callable_given_numpy_gets_a_hint():
    m = linear_model()
    with pytest.raises(ak.InputError, match=r"plain callables get NumPy arrays.*array='torch'"):
        ak.explain(lambda t: m(t), torch.randn(1, 3, 4, 4), method="occlusion")
