"""Bad inputs get an error that names the problem before any work, for every method."""

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.errors import InputError, InvalidOptionError
from attribkit.testing import TinyCNN, as_users_have_it, assert_model_untouched

METHODS = [s.name for s in ak.methods() if "box_target" not in s.needs]  # drise: a detector


def prepared_model():
    torch.manual_seed(0)
    return as_users_have_it(TinyCNN())


class Forwards:
    """Counts the model's forwards (a pre-hook the test removes itself)."""

    def __init__(self, model):
        self.n = 0
        self.handle = model.register_forward_pre_hook(self.count)

    def count(self, *_):
        self.n += 1


def refused(method, x, match):
    """The method raises InputError matching ``match`` without running the model,
    and leaves it as it was."""
    model = prepared_model()
    with assert_model_untouched(model):
        counter = Forwards(model)
        try:
            with pytest.raises(InputError, match=match):
                ak.explain(model, x, method=method)
        finally:
            counter.handle.remove()
    assert counter.n == 0, f"{method} ran {counter.n} forward(s) before refusing the input"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(3, 12, 12), (2, 1, 3, 12, 12)], ids=["3d", "5d"])
def test_wrong_rank(method, shape):
    refused(method, torch.randn(shape), r"\(B, C, H, W\)")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_one_bad_pixel_is_refused(method, bad, images):
    x = images.clone()
    x[2, 1, 5, 7] = bad
    refused(method, x, r"(NaN|infinite) values \(image 2\)")


@pytest.mark.parametrize("method", METHODS)
def test_channel_mismatch_names_the_expected_channels(method):
    refused(method, torch.randn(2, 1, 12, 12), r"expects 3 input channels.*features\.0.*with 1")


@pytest.mark.parametrize("method", [s.name for s in ak.methods() if "layer" not in s.needs])
def test_layer_for_a_method_without_one_is_an_error(method, images):
    model = prepared_model()
    with assert_model_untouched(model), pytest.raises(InvalidOptionError, match="takes no layer"):
        ak.explain(model, images, method=method, layer="features")


@pytest.mark.parametrize("method", ["saliency", "gradcam", "occlusion", "captum.integrated_gradients"])
def test_float64_inputs_are_converted_to_the_models_dtype(method, images):
    model = prepared_model().eval()
    expected = ak.explain(model, images, method=method)
    got = ak.explain(model, images.double(), method=method)
    assert got.values.dtype == torch.float32
    torch.testing.assert_close(got.values, expected.values)


def test_model_errors_carry_the_input_shape(images):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 2))  # no conv to check against
    with pytest.raises(RuntimeError) as info:
        ak.explain(model, images, method="saliency")
    assert "attribkit: the inputs had shape (4, 3, 12, 12)" in "\n".join(getattr(info.value, "__notes__", []))


def test_evaluate_checks_inputs_and_relevance_too(images):
    model = prepared_model().eval()
    rel = torch.rand(4, 12, 12)
    x = images.clone()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match=r"NaN values \(image 0\)"):
        ak.evaluate(model, x, rel, metrics=("deletion_auc",))
    bad_rel = rel.clone()
    bad_rel[3, 1, 1] = float("inf")
    with pytest.raises(InputError, match=r"relevance maps contain infinite values \(image 3\)"):
        ak.evaluate(model, images, bad_rel, metrics=("deletion_auc",))
    with pytest.raises(InputError, match="expects 3 input channels"):
        ak.evaluate(model, images[:, :1], rel, metrics=("deletion_auc",))


def test_forward_only_methods_check_numpy_batches_of_any_model(images):
    def predict(batch: np.ndarray) -> np.ndarray:
        return batch.reshape(len(batch), -1)[:, :3]

    x = images.numpy().copy()
    x[1, 0, 0, 0] = np.nan
    with pytest.raises(InputError, match=r"NaN values \(image 1\)"):
        ak.explain(predict, x, method="occlusion")
    with pytest.raises(InputError, match=r"\(B, C, H, W\)"):
        ak.explain(predict, images[0].numpy(), method="occlusion")


@pytest.mark.parametrize("method, option, value", [("captum.integrated_gradients", "n_steps", 2.5),
                                                   ("smoothgrad", "n_samples", 10.0),
                                                   ("ablationcam", "forward_batch_size", True)])
def test_integer_options_take_integers(method, option, value, images):
    with pytest.raises(InvalidOptionError, match=f"option '{option}'.*expects int"):
        ak.explain(prepared_model(), images, method=method, **{option: value})
    assert ak.get_method(method).bind_options({option: np.int64(3)})[option] == 3
