"""explain_dataset with per-item Box / Region targets: the item forms, ak.per_item, what the
store keeps for the report, resume and the settings (issue 24, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

import attribkit as ak
from attribkit.datasets.store import StoreError
from attribkit.errors import InputError, InvalidOptionError, TargetError

N, SIDE = 5, 16
FIXED = torch.tensor([[2.0, 2.0, 10.0, 10.0], [4.0, 4.0, 14.0, 14.0], [0.0, 6.0, 8.0, 15.0]])


class TinyDetector(torch.nn.Module):
    """Three fixed detections per image, labels 1, 2, 1, their scores from a convolution of
    the image (so gradients reach the pixels): a torchvision-shaped eval output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        x = torch.stack(list(x)) if isinstance(x, (list, tuple)) else x
        scores = self.conv(x).mean((2, 3)).sigmoid()
        return [{"boxes": FIXED.clone(), "labels": torch.tensor([1, 2, 1]), "scores": s} for s in scores]


def segmenter() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 4, 3, padding=1)  # (B, 4, H, W) logits


def images(n: int = N, side: int = SIDE) -> torch.Tensor:
    return torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(1))


BOXES = torch.tensor([[2.0, 2.0, 10.0, 10.0], [4.0, 4.0, 14.0, 14.0], [1.0, 1.0, 9.0, 9.0],
                      [0.0, 6.0, 8.0, 15.0], [3.0, 3.0, 11.0, 11.0]])
LABELS = torch.tensor([1, 2, 1, 1, 1])  # each box's best match has its label: no zero map


class Items(torch.utils.data.Dataset):
    def __init__(self, make):
        self.x, self.make = images(), make

    def __len__(self):
        return N

    def __getitem__(self, i):
        return self.make(self.x[i], i)


def run(model, data, out, methods=("saliency",), **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("batch_size", 2)
    return ak.explain_dataset(model, data, list(methods), out, **kwargs)


def expected_box_maps(model, method="saliency"):
    """Each item explained alone with its Box (the reference: explain, item by item)."""
    x = images()
    return np.concatenate([ak.explain(model, x[i:i + 1], ak.Box(BOXES[i], int(LABELS[i])), method=method).numpy()
                           for i in range(N)])


@pytest.mark.parametrize("form", ["box", "dict", "tensors", "per_item"])
def test_box_items_in_every_form_store_their_maps_boxes_and_labels(form, tmp_path):
    model = TinyDetector()
    if form == "box":
        data = Items(lambda x, i: (x, ak.Box(BOXES[i], int(LABELS[i]))))
    elif form == "dict":
        data = Items(lambda x, i: (x, {"boxes": BOXES[i:i + 1], "labels": LABELS[i:i + 1]}))
    elif form == "tensors":
        data = torch.utils.data.TensorDataset(images(), BOXES, LABELS)
    else:
        data = torch.utils.data.TensorDataset(images(), torch.arange(N))  # (image, index)
    target = ak.per_item(lambda item: ak.Box(BOXES[int(item[1])], int(LABELS[int(item[1])]))) \
        if form == "per_item" else None
    store = run(model, data, tmp_path / "run.zarr", target=target)
    assert store.complete
    np.testing.assert_allclose(np.asarray(store["saliency"]), expected_box_maps(model), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(store.boxes, BOXES.numpy())
    np.testing.assert_array_equal(store.targets, LABELS.numpy())
    assert store.regions is None and store.predictions is None  # a detector's output has no top class
    if form == "per_item":
        assert store.settings["target"]["per_item"].endswith("<lambda>")
    else:
        assert store.settings["target"] == {"from_items": "box"}


def test_region_items_store_the_mask_and_a_small_copy_of_a_large_one(tmp_path):
    model = segmenter()
    masks = torch.zeros(N, SIDE, SIDE, dtype=torch.bool)
    for i in range(N):
        masks[i, i:i + 6, 2:2 + 2 * i + 3] = True
    data = Items(lambda x, i: (x, ak.Region(i % 4, masks[i] if i != 3 else None)))
    store = run(model, data, tmp_path / "run.zarr")
    x = images()
    for i in range(N):
        expected = ak.explain(model, x[i:i + 1], ak.Region(i % 4, masks[i] if i != 3 else None), method="saliency")
        np.testing.assert_allclose(store["saliency"][i:i + 1], expected.numpy(), rtol=1e-5, atol=1e-7)
    regions = store.regions
    assert regions.shape == (N, SIDE, SIDE) and regions.dtype == bool  # 16 px: kept whole
    for i in range(N):
        np.testing.assert_array_equal(regions[i], masks[i].numpy() if i != 3 else np.zeros((SIDE, SIDE), bool))
    np.testing.assert_array_equal(store.targets, [0, 1, 2, 3, 0])

    side = 100  # sampled to 64 px: cell (r, c) holds the pixel nearest its centre, floor((r + 0.5) * 100 / 64)
    big = torch.zeros(side, side, dtype=torch.bool)
    big[10:37, 51:90] = True
    data = torch.utils.data.TensorDataset(images(2, side))
    store = run(model, data, tmp_path / "big.zarr", target=ak.per_item(lambda item: ak.Region(1, big)))
    small = store.regions[0]
    assert small.shape == (64, 64)
    picked = [int((r + 0.5) * side / 64) for r in range(64)]
    brute = np.array([[bool(big[r, c]) for c in picked] for r in picked])
    np.testing.assert_array_equal(small, brute)


def test_resume_keeps_the_stored_batches_and_refuses_a_changed_box(tmp_path):
    model = TinyDetector()
    out = tmp_path / "run.zarr"
    boxes = BOXES.clone()
    data = Items(lambda x, i: (x, ak.Box(boxes[i], int(LABELS[i]))))
    full = run(model, data, out)
    done = zarr.open_group(out, mode="r+")["done"]
    done[1] = False  # batch 1 (items 2, 3) is computed again
    resumed = run(model, data, out)
    assert resumed.complete and resumed.runs[-1]["images"] == 2
    np.testing.assert_array_equal(np.asarray(resumed["saliency"]), np.asarray(full["saliency"]))
    np.testing.assert_array_equal(resumed.boxes, BOXES.numpy())
    boxes[0, 2] += 1  # a stored item's box changed: its input digest differs
    with pytest.raises(StoreError, match="item 0 of the data is not the one stored"):
        run(model, data, out)
    # another kind of target is another run
    with pytest.raises(StoreError, match="target was"):
        run(model, Items(lambda x, i: (x, ak.Region(1))), out)


def test_bad_item_targets_are_named_before_any_work(tmp_path):
    model = TinyDetector()
    two = Items(lambda x, i: (x, {"boxes": BOXES[:2], "labels": LABELS[:2]}))
    with pytest.raises(TargetError, match="item 0 of the data names 2 boxes; explain_dataset stores one map per item"):
        run(model, two, tmp_path / "a.zarr")
    several = Items(lambda x, i: (x, ak.Box([BOXES[:2]], [LABELS[:2]])))
    with pytest.raises(TargetError, match="names 2 boxes"):
        run(model, several, tmp_path / "b.zarr")
    boxed = Items(lambda x, i: (x, ak.Box(BOXES[i], 1)))
    with pytest.raises(InvalidOptionError, match="metrics score a classifier's class"):
        run(model, boxed, tmp_path / "c.zarr", metrics=["pointing_game"])
    with pytest.raises(InvalidOptionError, match="metrics score a classifier's class"):
        run(model, images(), tmp_path / "d.zarr", target=ak.per_item(lambda item: ak.Box(BOXES[0], 1)),
            metrics=["pointing_game"])
    with pytest.raises(TargetError, match="carry their targets .* target=1 was given"):
        run(model, boxed, tmp_path / "e.zarr", target=1)
    mixed = Items(lambda x, i: (x, ak.Region(1) if i % 2 else ak.Box(BOXES[i], 1)))
    with pytest.raises(InputError, match="targets of different kinds"):
        run(model, mixed, tmp_path / "f.zarr")
    wrong_mask = Items(lambda x, i: (x, ak.Region(1, torch.ones(8, 8))))
    with pytest.raises(TargetError, match=r"Region mask of shape \(8, 8\) for an image of \(16, 16\)"):
        run(segmenter(), wrong_mask, tmp_path / "g.zarr")
    with pytest.raises(TargetError, match=r"for the same Region on every item pass target=ak.per_item\(lambda"):
        run(segmenter(), images(), tmp_path / "h.zarr", target=ak.Region(1))
    with pytest.raises(TargetError, match="per_item takes a function"):
        ak.per_item(3)
    assert not any((tmp_path / name).exists() and any((tmp_path / name).iterdir())
                   for name in ("a.zarr", "b.zarr", "c.zarr", "d.zarr", "e.zarr", "g.zarr", "h.zarr"))
