"""ak.compare reuses results it already has for the same model, images, method,
options and target (attribkit.reuse), and never a stale one."""

import copy

import pytest
import torch

import attribkit as ak
from attribkit import reuse

METHODS = ["saliency", "gradcam"]


@pytest.fixture(autouse=True)
def empty_table():
    reuse.clear()
    yield
    reuse.clear()


@pytest.fixture
def counted(tiny_cnn):
    """``tiny_cnn`` with a list of its forwards' row counts (the hook stays for the test)."""
    rows = []
    handle = tiny_cnn.register_forward_pre_hook(lambda _m, args: rows.append(len(args[0])))
    yield tiny_cnn, rows
    handle.remove()


def forwards_of(model_rows, *args, **kwargs):
    model, rows = model_rows
    rows.clear()
    ak.compare(model, *args, **kwargs)
    return len(rows)


def test_a_second_compare_reuses_every_result(counted, images):
    first = forwards_of(counted, images, METHODS, abs=False)
    assert first > 2
    assert forwards_of(counted, images, METHODS, abs=False) == 1  # the class probabilities only
    assert forwards_of(counted, images, METHODS, abs=True) > 1   # another option: computed
    assert forwards_of(counted, images, METHODS, target=2) > 1   # another target: computed


@pytest.mark.parametrize("change", ["in place", "through .data", "load_state_dict"])
def test_changed_weights_are_computed_again(counted, images, change):
    model, _ = counted
    forwards_of(counted, images, ["saliency"])
    before = ak.explain(model, images, method="saliency").values
    weight = model.fc.weight
    version = weight._version
    if change == "in place":
        with torch.no_grad():
            weight.add_(0.5)
    elif change == "through .data":
        weight.data[0, 0] += 1e-3  # autograd's version counter does not see this
        assert weight._version == version
    else:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        state["fc.weight"][1, 2] = 7.0
        model.load_state_dict(state)
    assert forwards_of(counted, images, ["saliency"]) > 1
    fp = reuse.fingerprint(model, images)
    reused = reuse.lookup(fp, "saliency", target=None, layer=None, batch_size=None,
                          noise_tunnel=None, options=ak.get_method("saliency").bind_options({}))
    fresh = ak.explain(model, images, method="saliency").values
    torch.testing.assert_close(reused.values, fresh)
    assert not torch.equal(fresh, before)


def test_changed_images_or_another_model_are_computed_again(counted, images):
    model, _ = counted
    forwards_of(counted, images, ["saliency"])
    images[0, 0, 0, 0] += 1.0  # changed in place: same tensor object, new values
    assert forwards_of(counted, images, ["saliency"]) > 1
    twin = copy.deepcopy(model)  # same weights, another object: not the same model
    assert reuse.lookup(reuse.fingerprint(twin, images), "saliency", target=None, layer=None,
                        batch_size=None, noise_tunnel=None,
                        options=ak.get_method("saliency").bind_options({})) is None


def test_a_slow_explain_is_reused_and_its_result_may_be_changed(counted, images, monkeypatch):
    model, rows = counted
    monkeypatch.setattr(reuse, "RECORD_AFTER_S", 0.0)
    result = ak.explain(model, images, method="gradcam")
    expected = result.values.clone()
    result.values.zero_()  # the user's result is theirs: the remembered one is a copy
    assert forwards_of(counted, images, ["gradcam"]) == 1
    fp = reuse.fingerprint(model, images)
    kept = reuse.lookup(fp, "gradcam", target=None, layer=None, batch_size=None, noise_tunnel=None,
                        options=ak.get_method("gradcam").bind_options({}))
    torch.testing.assert_close(kept.values, expected)


def test_quick_explain_calls_random_calls_and_switched_off_are_not_reused(counted, images,
                                                                          monkeypatch):
    model, _ = counted
    ak.explain(model, images, method="gradcam")  # well under RECORD_AFTER_S: not remembered
    assert forwards_of(counted, images, ["gradcam"]) > 1
    forwards_of(counted, images, ["smoothgrad"], n_samples=2)  # seed=None: random
    assert forwards_of(counted, images, ["smoothgrad"], n_samples=2) > 1
    forwards_of(counted, images, ["smoothgrad"], n_samples=2, seed=3)
    assert forwards_of(counted, images, ["smoothgrad"], n_samples=2, seed=3) == 1
    monkeypatch.setenv("ATTRIBKIT_REUSE", "0")
    assert forwards_of(counted, images, ["gradcam"]) > 1


def test_random_noise_tunnels_are_not_remembered(tiny_cnn, images, monkeypatch):
    from attribkit.torch.noise import NoiseTunnel

    monkeypatch.setattr(reuse, "RECORD_AFTER_S", 0.0)
    for tunnel in ["smoothgrad", NoiseTunnel(n_samples=2)]:
        ak.explain(tiny_cnn, images, method="saliency", noise_tunnel=tunnel)
    assert len(reuse._table) == 0
    ak.explain(tiny_cnn, images, method="saliency", noise_tunnel=NoiseTunnel(n_samples=2, seed=1))
    assert len(reuse._table) == 1


def test_the_table_is_bounded(counted, images, monkeypatch):
    monkeypatch.setattr(reuse, "MAX_ENTRIES", 2)
    forwards_of(counted, images, ["saliency", "gradcam", "input_x_gradient"])
    assert len(reuse._table) == 2
    assert forwards_of(counted, images, ["gradcam", "input_x_gradient"]) == 1  # the newest two
    assert forwards_of(counted, images, ["saliency"]) > 1


def test_digest_sees_every_element_and_not_the_layout():
    x = torch.randn(3, 5, 7)
    assert reuse.digest(x) == reuse.digest(x.clone())
    assert reuse.digest(x.transpose(0, 1)) == reuse.digest(x.transpose(0, 1).contiguous())
    for index in [(0, 0, 0), (2, 4, 6), (1, 2, 3)]:
        y = x.clone()
        y[index] = torch.nextafter(y[index], torch.tensor(float("inf")))  # one bit
        assert reuse.digest(y) != reuse.digest(x)
    big = torch.randn(2**21 + 5)  # more than one block
    swapped = big.clone()
    swapped[[0, 2**20]] = swapped[[2**20, 0]]  # two values trade places
    assert reuse.digest(swapped) != reuse.digest(big)
    assert reuse.digest(x.double())[0] == "torch.float64" and reuse.digest(x.numpy()) == reuse.digest(x)
