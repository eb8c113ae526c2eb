"""The target-object core: raw outputs, rows, lists of images, the automatic layer's
batch and path rules, the all-zero warning, raw outputs through predict."""

import warnings

import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import AttributionWarning, InputError, TargetError
from attribkit.predict import merge_outputs
from attribkit.testing import TinyCNN, assert_model_untouched, forward_rows


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyCNN().eval()


@pytest.fixture
def x():
    torch.manual_seed(1)
    return torch.randn(3, 3, 12, 12)


class DictOut(nn.Module):
    """A classifier that returns its logits in a dict, a tuple or an object."""

    def __init__(self, inner, kind):
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x):
        logits = self.inner(x)
        if self.kind == "dict":
            return {"logits": logits, "hidden": x}
        if self.kind == "tuple":
            return logits, x
        return type("Output", (), {"logits": logits})()


@pytest.mark.parametrize("method", ["saliency", "gradcam", "occlusion"])
def test_class_object_equals_the_int_target(model, x, method):
    options = {"window": 4} if method == "occlusion" else {}
    plain = ak.explain(model, x, 2, method=method, **options)
    wrapped = ak.explain(model, x, ak.Class(2), method=method, **options)
    assert torch.equal(plain.values, wrapped.values)
    assert wrapped.target.tolist() == [2, 2, 2]


@pytest.mark.parametrize("kind", ["dict", "tuple", "object"])
def test_class_targets_read_logits_out_of_dicts_tuples_and_objects(model, x, kind):
    expected = ak.explain(model, x, [0, 1, 4], method="saliency").values
    got = ak.explain(DictOut(model, kind), x, [0, 1, 4], method="saliency").values
    torch.testing.assert_close(got, expected)
    top = ak.explain(DictOut(model, kind), x, method="saliency")  # None: the top class
    assert top.target.tolist() == model(x).argmax(1).tolist()


def test_a_target_that_cannot_read_the_output_says_what_the_model_returned(model, x):
    with assert_model_untouched(model), pytest.raises(TargetError, match=r"returned Tensor\(3, 5\).*fit Class"):
        ak.explain(model, x, ak.Region(1), method="saliency")
    with pytest.raises(TargetError, match="list.*dict"):
        ak.explain(model, x, ak.Box([0, 0, 4, 4], 1), method="saliency")
    with pytest.raises(TargetError, match="target object"):
        ak.explain(model, x, "cat", method="saliency")


def test_bad_target_objects_are_refused_before_any_forward(model, x):
    bad = [ak.Class([1, 2]),                      # 2 classes for 3 images
           ak.Region(1, torch.zeros(2, 12, 12)),  # 2 masks for 3 images
           ak.Similarity(torch.ones(2, 5))]       # 2 embeddings for 3 images
    for target in bad:
        with forward_rows(model) as rows, pytest.raises(TargetError):
            ak.explain(model, x, target, method="saliency")
        assert rows == []
    for make in (lambda: ak.Box([4, 4, 2, 8], 1), lambda: ak.Labels([]),
                 lambda: ak.Similarity(torch.zeros(5)), lambda: ak.Class(1.5)):
        with pytest.raises(TargetError):
            make()


def test_an_expanding_target_gives_one_row_per_thing_image_major(model, x):
    result = ak.explain(model, x, ak.Labels([1, 3], score="logit"), method="saliency")
    assert result.values.shape == (6, 3, 12, 12)
    assert result.meta["image_index"].tolist() == [0, 0, 1, 1, 2, 2]
    assert result.target.tolist() == [1, 3] * 3
    for row, (image, label) in enumerate([(i, c) for i in range(3) for c in (1, 3)]):
        one = ak.explain(model, x[image:image + 1], label, method="saliency").values[0]
        torch.testing.assert_close(result.values[row], one)


def test_a_list_of_images_is_stacked_or_explained_one_by_one(model, x):
    same = ak.explain(model, list(x), 1, method="saliency")
    torch.testing.assert_close(same.values, ak.explain(model, x, 1, method="saliency").values)
    sizes = [torch.randn(3, 12, 12), torch.randn(3, 16, 10)]
    results = ak.explain(model, sizes, [1, 4], method="gradcam")
    assert isinstance(results, list) and [r.values.shape[-2:] for r in results] == [(12, 12), (16, 10)]
    for image, target, result in zip(sizes, [1, 4], results):
        torch.testing.assert_close(result.values, ak.explain(model, image[None], target,
                                                              method="gradcam").values)
    with pytest.raises(InputError, match=r"\(C, H, W\)"):
        ak.explain(model, [torch.randn(1, 3, 12, 12)], 1, method="saliency")


class RoiLike(nn.Module):
    """A backbone, then a spatial layer whose batch is not the image batch (four crops
    per image, as RoI pooling gives), then a spatial branch that does not reach the
    output (detached, as a detector's proposals are)."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.crops = nn.Conv2d(4, 4, 1)
        self.side = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        feats = self.backbone(x)
        b, c, h, w = feats.shape
        crops = self.crops(feats.reshape(b, c, 2, h // 2, 2, w // 2).permute(0, 2, 4, 1, 3, 5)
                           .reshape(b * 4, c, h // 2, w // 2))
        pooled = crops.mean((2, 3)).reshape(b, 4, c).mean(1)
        gate = self.side(feats).detach().mean((1, 2, 3))[:, None]
        return self.head(pooled) + gate


def test_the_automatic_layer_has_the_image_batch_and_reaches_the_score(x):
    torch.manual_seed(0)
    model = RoiLike().eval()
    # brute force: the layers whose output has the image batch and whose gradient exists
    names = []
    for name in ("backbone.0", "backbone.1", "backbone", "crops", "side"):
        acts = {}
        layer = dict(model.named_modules())[name]
        handle = layer.register_forward_hook(lambda _m, _i, o: acts.setdefault("a", o))
        out = model(x.clone().requires_grad_())
        handle.remove()
        a = acts["a"]
        grad = torch.autograd.grad(out[:, 0].sum(), a, allow_unused=True)[0] if a.requires_grad else None
        if a.shape[0] == len(x) and grad is not None:
            names.append(name)
    assert names == ["backbone.0", "backbone.1", "backbone"]  # in completion order
    result = ak.explain(model, x, 0, method="gradcam")
    assert result.layer == names[-1]


class Ignores(nn.Module):
    """Class 1 is a constant: its maps say nothing."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        logits = self.inner(x)
        return torch.stack([logits[:, 0], logits[:, 1] * 0 + 1.0], 1)


def test_an_all_zero_map_is_a_warning_naming_the_rows(model, x):
    wrapped = Ignores(model).eval()
    with pytest.warns(AttributionWarning, match=r"saliency: the map of rows 0, 2 is zero"):
        ak.explain(wrapped, x, [1, 0, 1], method="saliency")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AttributionWarning)
        ak.explain(wrapped, x, 0, method="saliency")


def test_predict_merges_raw_outputs_over_chunks():
    a = [{"boxes": torch.ones(2, 4)}, {"boxes": torch.zeros(0, 4)}]
    b = [{"boxes": torch.ones(1, 4)}]
    assert len(merge_outputs([a, b])) == 3
    merged = merge_outputs([{"out": torch.ones(2, 3)}, {"out": torch.zeros(1, 3)}])
    assert merged["out"].tolist() == [[1, 1, 1]] * 2 + [[0, 0, 0]]
    pair = merge_outputs([(torch.ones(2), torch.ones(2, 1)), (torch.zeros(1), torch.zeros(1, 1))])
    assert pair[0].tolist() == [1, 1, 0] and pair[1].shape == (3, 1)

    def detector(batch):
        return [{"boxes": torch.tensor([[0.0, 0, 4, 4]]), "labels": torch.tensor([1]),
                 "scores": batch[i].mean().reshape(1)} for i in range(len(batch))]

    predict = ak.as_predict(detector, array="torch", batch_size=2)
    out = predict(torch.rand(5, 3, 8, 8))
    assert isinstance(out, list) and len(out) == 5
    short = ak.as_predict(lambda batch: [{"boxes": torch.zeros(0, 4)}], array="torch")
    with pytest.raises(InputError, match="1 rows for a batch of 3"):
        short(torch.rand(3, 3, 8, 8))


def test_noise_tunnel_gives_each_noisy_copy_its_images_target(model, x):
    from attribkit.torch.noise import NoiseTunnel

    tunnel = NoiseTunnel("smoothgrad", 5, 0.1, 0)
    by_object = ak.explain(model, x, ak.Class([0, 2, 4]), method="saliency", noise_tunnel=tunnel,
                           batch_size=4)
    by_int = ak.explain(model, x, [0, 2, 4], method="saliency", noise_tunnel=tunnel, batch_size=4)
    torch.testing.assert_close(by_object.values, by_int.values)
