"""explain_dataset and its store: values equal explain's, every column, resume, bad input."""

import numpy as np
import pytest
import torch
import zarr

import attribkit as ak
from attribkit.datasets.store import StoreError
from attribkit.errors import InputError, InvalidOptionError, LayerError, TargetError, UnknownMethodError
from attribkit.testing import assert_model_untouched
from tests.dataset_support import CLASSES, Numbered, small_model, stacked

METHODS = ["saliency", "gradcam", "occlusion"]
OCCLUSION = {"window": 8, "stride": 8}


@pytest.fixture
def model():
    return small_model()


def run(model, data, out, methods=("saliency",), **kwargs):
    kwargs.setdefault("progress", False)
    return ak.explain_dataset(model, data, list(methods), out, **kwargs)


def test_maps_equal_explain_on_the_stacked_images(model, tmp_path):
    data = Numbered(10)
    store = run(model, data, tmp_path / "run.zarr", METHODS, batch_size=4, occlusion=OCCLUSION)
    x = stacked(10)
    assert isinstance(store, ak.AttributionStore) and store.complete and len(store) == 10
    assert store.methods == METHODS
    for method in METHODS:
        options = {"occlusion": OCCLUSION}.get(method, {})
        expected = ak.explain(model, x, method=method, **options)
        got = np.asarray(store[method])
        assert got.dtype == np.float32 and got.shape == tuple(expected.values.shape)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(store.targets, expected.target.numpy())
    with torch.no_grad():
        scores = model(x)
    np.testing.assert_array_equal(store.predictions.classes, scores.argmax(1).numpy())
    np.testing.assert_allclose(store.predictions.scores, scores.max(1).values.numpy(), rtol=1e-5)
    np.testing.assert_array_equal(store.labels, [data.label(i) for i in range(10)])
    np.testing.assert_array_equal(store.ids, np.arange(10))
    assert store.layers == {"saliency": None, "gradcam": ak.explain(model, x[:1], method="gradcam").layer,
                            "occlusion": None}
    assert store["grad_cam"].shape == store["gradcam"].shape  # aliases work
    again = ak.open_store(tmp_path / "run.zarr")
    np.testing.assert_array_equal(np.asarray(again["gradcam"]), np.asarray(store["gradcam"]))
    assert again.runs[-1]["images"] == 10 and again.runs[-1]["processes"] == 1


def test_metrics_equal_evaluate_on_the_stacked_images(model, tmp_path):
    data = Numbered(9, masks=True)
    metrics = ["deletion_auc", "pointing_game", "relevance_mass_accuracy"]
    store = run(model, data, tmp_path / "run.zarr", ["saliency", "gradcam"], batch_size=4, metrics=metrics,
                metric_options={"deletion_auc": {"steps": 8}})
    x = stacked(9)
    masks = torch.stack([data.mask(i) for i in range(9)])
    for method in ("saliency", "gradcam"):
        result = ak.explain(model, x, method=method)
        expected = ak.evaluate(model, x, result, metrics=metrics, masks=masks,
                               options={"deletion_auc": {"steps": 8}})
        for metric in metrics:
            np.testing.assert_allclose(store.metrics[method][metric], expected[metric].scores.numpy(),
                                       rtol=1e-4, atol=1e-5, err_msg=f"{method} {metric}")


@pytest.mark.parametrize("form", ["label", "int", "per_item", "callable"])
def test_targets(model, tmp_path, form):
    data = Numbered(6)
    x = stacked(6)
    target = {"label": "label", "int": 3, "per_item": [i % CLASSES for i in range(6)],
              "callable": lambda scores: scores[:, 1] - scores[:, 0]}[form]
    store = run(model, data, tmp_path / "run.zarr", batch_size=4, target=target)
    explained = [data.label(i) for i in range(6)] if form == "label" else target
    expected = ak.explain(model, x, explained, method="saliency")
    np.testing.assert_allclose(np.asarray(store["saliency"]), expected.numpy(), rtol=1e-5, atol=1e-7)
    if form == "callable":
        assert store.targets is None
    else:
        np.testing.assert_array_equal(store.targets, expected.target.numpy())


def test_a_dataloader_gives_its_batch_size_and_a_shuffling_one_is_refused(model, tmp_path):
    loader = torch.utils.data.DataLoader(Numbered(7), batch_size=3)
    store = run(model, loader, tmp_path / "run.zarr", batch_size=None)
    assert store.batch_size == 3 and store.complete
    np.testing.assert_allclose(np.asarray(store["saliency"]),
                               ak.explain(model, stacked(7), method="saliency").numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(InputError, match="RandomSampler"):
        run(model, torch.utils.data.DataLoader(Numbered(7), shuffle=True), tmp_path / "other.zarr")


def test_workers_give_the_same_store(model, tmp_path):
    one = run(model, Numbered(8), tmp_path / "a.zarr", batch_size=3)
    two = run(model, Numbered(8), tmp_path / "b.zarr", batch_size=3, num_workers=2)
    np.testing.assert_array_equal(np.asarray(one["saliency"]), np.asarray(two["saliency"]))


def test_unreadable_items_are_stored_as_skipped_rows_or_fatal_with_strict(model, tmp_path):
    data = Numbered(7, unreadable=(2, 5))
    store = run(model, data, tmp_path / "run.zarr", ["saliency", "gradcam"], batch_size=3)
    values = np.asarray(store["saliency"])
    assert np.isnan(values[[2, 5]]).all() and not np.isnan(values[[0, 1, 3, 4, 6]]).any()
    readable = [0, 1, 3, 4, 6]
    expected = ak.explain(model, stacked(7)[readable], method="saliency")
    np.testing.assert_allclose(values[readable], expected.numpy(), rtol=1e-5, atol=1e-7)
    assert store.targets[2] == -1 and store.labels[5] == -1 and store.predictions.classes[2] == -1
    assert store.skipped == [("2", "item 2 is damaged"), ("5", "item 5 is damaged")]
    assert store.done.all()
    with pytest.raises(InputError, match="item 2 cannot be read.*damaged"):
        run(model, data, tmp_path / "strict.zarr", batch_size=3, strict=True)


def test_a_batch_with_no_readable_item(model, tmp_path):
    store = run(model, Numbered(4, unreadable=(0, 1)), tmp_path / "run.zarr", batch_size=2)
    assert store.complete and np.isnan(np.asarray(store["saliency"])[:2]).all()


def test_resume_computes_only_the_missing_batches(model, tmp_path):
    out = tmp_path / "run.zarr"
    full = run(model, Numbered(10), tmp_path / "full.zarr", ["saliency", "gradcam"], batch_size=3)
    run(model, Numbered(10), out, ["saliency", "gradcam"], batch_size=3)
    # damage the store as a crash would: batches 1 and 3 lose their markers, a torn temp file is left
    done = zarr.open_group(out, mode="r+")["done"]
    done[1] = False
    done[3] = False
    (out / "maps" / "saliency" / "c").mkdir(exist_ok=True)
    torn = out / "maps" / "saliency" / "c" / f"1.{'0' * 32}.partial"
    torn.write_bytes(b"torn")
    stamp = {p: p.stat().st_mtime_ns for p in (out / "maps" / "gradcam").rglob("*") if p.is_file()}
    resumed = run(model, Numbered(10), out, ["saliency", "gradcam"], batch_size=3)
    assert resumed.complete and resumed.runs[-1]["images"] == 3 + 1  # batch 1 (3 images) and batch 3 (1)
    assert not torn.exists()
    for method in ("saliency", "gradcam"):
        np.testing.assert_array_equal(np.asarray(resumed[method]), np.asarray(full[method]))
    np.testing.assert_array_equal(resumed.ids, np.arange(10))
    untouched = [p for p, t in stamp.items() if p.exists() and p.stat().st_mtime_ns == t]
    assert len(untouched) >= 2  # the chunks of batches 0 and 2 were not written again
    assert run(model, Numbered(10), out, ["saliency", "gradcam"], batch_size=3).runs[-1]["images"] == 0


def test_a_store_of_another_run_is_refused(model, tmp_path):
    out = tmp_path / "run.zarr"
    run(model, Numbered(6), out, batch_size=3)
    with pytest.raises(StoreError, match="another run.*methods was \\['saliency'\\], now \\['gradcam'\\]"):
        run(model, Numbered(6), out, ["gradcam"], batch_size=3)
    with pytest.raises(StoreError, match="batch_size was 3, now 2"):
        run(model, Numbered(6), out, batch_size=2)
    other = small_model()
    with torch.no_grad():
        other.fc.bias += 1
    with pytest.raises(StoreError, match="model was"):
        run(other, Numbered(6), out, batch_size=3)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file.txt").write_text("mine")
    with pytest.raises(StoreError, match="exists and is not an attribkit store"):
        run(model, Numbered(6), tmp_path / "busy")
    with pytest.raises(StoreError, match="does not exist"):
        ak.open_store(tmp_path / "nothing.zarr")


def test_bad_input_gets_explains_errors_and_the_model_is_untouched(model, tmp_path):
    model.train()
    data = Numbered(4)
    with assert_model_untouched(model):
        with pytest.raises(UnknownMethodError):
            run(model, data, tmp_path / "a.zarr", ["no_such_method"])
        with pytest.raises(LayerError):
            run(model, data, tmp_path / "b.zarr", ["gradcam"], layer="features.99")
        with pytest.raises(TargetError, match="out of range"):
            run(model, data, tmp_path / "c.zarr", target=CLASSES)
        with pytest.raises(TargetError, match="have none"):
            run(model, Numbered(4, labels=False), tmp_path / "d.zarr", target="label")
        with pytest.raises(InvalidOptionError, match="need evidence masks"):
            run(model, data, tmp_path / "e.zarr", metrics=["pointing_game"])
        with pytest.raises(InvalidOptionError, match="has an option 'windw'"):
            run(model, data, tmp_path / "f.zarr", ["saliency", "occlusion"], windw=3)
        with pytest.raises(InputError, match="holds a str where an image tensor belongs"):
            run(model, [("not an image", 1)], tmp_path / "g.zarr")
        with pytest.raises(InputError, match="different shapes"):
            run(model, [torch.zeros(3, 8, 8), torch.zeros(3, 9, 9)], tmp_path / "h.zarr")
        run(model, data, tmp_path / "ok.zarr", ["saliency", "gradcam"], batch_size=2)
    assert model.training
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_per_method_options_and_layers(model, tmp_path):
    store = run(model, Numbered(4), tmp_path / "run.zarr", ["gradcam", "occlusion"],
                layer={"gradcam": "features.1"}, occlusion={"window": 4, "stride": 4}, gradcam={"relu": False})
    assert store.layers["gradcam"] == "features.1"
    expected = ak.explain(model, stacked(4), method="gradcam", layer="features.1", relu=False)
    np.testing.assert_allclose(np.asarray(store["gradcam"]), expected.numpy(), rtol=1e-5, atol=1e-7)
    assert store.settings["options"]["occlusion"]["window"] == 4


def test_progress_bar_counts_images(model, tmp_path, capsys):
    run(model, Numbered(5), tmp_path / "run.zarr", batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "5/5" in err and "img/s" in err


class FailingStore:
    """A store whose second batch cannot be written (a full disk)."""

    def __init__(self):
        self.written = []

    def write_batch(self, batch, start, columns, inputs=None):
        if batch == 1:
            raise OSError("No space left on device")
        self.written.append(batch)


def test_a_write_error_reaches_the_caller_and_earlier_batches_are_kept():
    from attribkit.datasets.writer import BatchWriter

    store = FailingStore()
    with pytest.raises(OSError, match="No space left"):
        with BatchWriter(store, pending=1) as writer:
            for batch in range(4):
                writer.put(batch, batch * 2, {})
    assert store.written == [0]  # nothing after the failed batch is written


class Interrupted(Numbered):
    """Ctrl-C while item 5 is loaded (while ``interrupt`` is set)."""

    interrupt = True

    def __getitem__(self, index):
        if index == 5 and self.interrupt:
            raise KeyboardInterrupt
        return super().__getitem__(index)


def test_ctrl_c_says_how_much_is_stored_and_the_rest_resumes(model, tmp_path):
    out = tmp_path / "run.zarr"
    with pytest.raises(KeyboardInterrupt, match=r"interrupted: 4 of 8 images are stored .* resumes"):
        run(model, Interrupted(8), out, batch_size=2)
    data = Interrupted(8)
    data.interrupt = False
    resumed = run(model, data, out, batch_size=2)
    assert resumed.complete and resumed.runs[-1]["images"] == 4


# ------------------------------------------------------------------ stored dtype and compressor


def _map_bytes(out, method):
    return sum(p.stat().st_size for p in (out / "maps" / method / "c").rglob("*") if p.is_file())  # the chunks


@pytest.mark.parametrize("dtype, compressor", [("float16", "zstd"), ("float16", "blosc-lz4"), ("float16", None),
                                               ("float32", "gzip"), ("float32", "blosc-zstd")])
def test_float16_and_compressed_maps_equal_explain_within_rounding(model, tmp_path, dtype, compressor):
    data = Numbered(10, unreadable=(6,))
    out = tmp_path / "run.zarr"
    store = run(model, data, out, ["saliency", "gradcam"], batch_size=4, dtype=dtype, compressor=compressor)
    assert store.settings["dtype"] == dtype and store.settings["compressor"] == (compressor or "none")
    readable = [i for i in range(10) if i != 6]
    x = stacked(10)[readable]
    for method in ("saliency", "gradcam"):
        expected = ak.explain(model, x, method=method).numpy()
        got = np.asarray(store[method])
        assert got.dtype == np.dtype(dtype) and got.shape[1:] == expected.shape[1:]
        assert np.isnan(got[6]).all()  # the unreadable row: the fill value
        if dtype == "float16":  # float16's rounding: half a unit in the last of 11 significant bits
            np.testing.assert_allclose(got[readable].astype(np.float32), expected, rtol=2 ** -11 + 1e-5, atol=1e-7)
        else:
            np.testing.assert_allclose(got[readable], expected, rtol=1e-5, atol=1e-7)
        again = ak.open_store(out)[method]  # a fresh reader, zarr decodes the codec
        np.testing.assert_array_equal(np.asarray(again), got)


def test_float16_and_a_compressor_make_the_maps_smaller(model, tmp_path):
    data = Numbered(16)
    sizes = {}
    for dtype, compressor in [("float32", None), ("float16", None), ("float16", "zstd")]:
        out = tmp_path / f"{dtype}-{compressor}.zarr"
        run(model, data, out, ["saliency", "gradcam"], batch_size=8, dtype=dtype, compressor=compressor)
        sizes[dtype, compressor] = sum(_map_bytes(out, m) for m in ("saliency", "gradcam"))
    raw = 16 * (3 + 1) * 16 * 16 * 4  # TinyCNN's gradcam is at the input's 16x16
    assert sizes["float32", None] == raw
    assert sizes["float16", None] == raw // 2
    assert sizes["float16", "zstd"] < sizes["float16", None]


@pytest.mark.parametrize("options, error, match", [
    ({"dtype": "float64"}, "StoreDtypeError", "float64.*float32, float16"),
    ({"dtype": "bfloat16"}, "StoreDtypeError", "bfloat16.*zarr.*cannot store"),
    ({"dtype": torch.bfloat16}, "StoreDtypeError", "bfloat16"),
    ({"compressor": "lzma"}, "CompressorError", "lzma.*none, zstd"),
])
def test_an_unknown_dtype_or_compressor_is_refused_before_any_work(model, tmp_path, options, error, match):
    from attribkit.datasets import encoding

    class Untouchable(Numbered):
        def __getitem__(self, index):
            raise AssertionError("the data was read")

    out = tmp_path / "run.zarr"
    with assert_model_untouched(model), pytest.raises(getattr(encoding, error), match=match) as caught:
        run(model, Untouchable(4), out, **options)
    assert isinstance(caught.value, ak.AttribkitError) and isinstance(caught.value, InvalidOptionError)
    assert not out.exists()


def test_resuming_with_another_dtype_or_compressor_is_refused(model, tmp_path):
    out = tmp_path / "run.zarr"
    run(model, Numbered(6), out, batch_size=3, dtype="float16", compressor="zstd")
    with pytest.raises(StoreError, match="dtype was 'float16', now 'float32'"):
        run(model, Numbered(6), out, batch_size=3, compressor="zstd")
    with pytest.raises(StoreError, match="compressor was 'zstd', now 'blosc-lz4'"):
        run(model, Numbered(6), out, batch_size=3, dtype="float16", compressor="blosc-lz4")
    again = run(model, Numbered(6), out, batch_size=3, dtype=np.float16, compressor="ZSTD")  # the same settings
    assert again.runs[-1]["images"] == 0


def test_a_store_from_before_the_dtype_setting_resumes_as_float32_uncompressed(model, tmp_path):
    out = tmp_path / "run.zarr"
    run(model, Numbered(6), out, batch_size=3)
    group = zarr.open_group(out, mode="r+")
    meta = group.attrs["attribkit"]
    del meta["settings"]["dtype"], meta["settings"]["compressor"]
    group.attrs["attribkit"] = meta
    assert run(model, Numbered(6), out, batch_size=3).runs[-1]["images"] == 0
    with pytest.raises(StoreError, match="dtype was 'float32', now 'float16'"):
        run(model, Numbered(6), out, batch_size=3, dtype="float16")


class Quadratic(torch.nn.Module):
    """Scores that grow with the square of the input: saliency grows with the input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, CLASSES, 3, padding=1)

    def forward(self, x):
        return (self.conv(x) ** 2).mean(dim=(2, 3))


class Loud(Numbered):
    """Items from ``loud`` on have images 1e8 times larger."""

    loud = 4

    def __getitem__(self, index):
        image, label = super().__getitem__(index)
        return (image * 1e8 if index >= self.loud else image), label


def test_float16_refuses_values_beyond_its_range_instead_of_storing_inf(tmp_path):
    from attribkit.datasets.encoding import Float16RangeError

    torch.manual_seed(0)
    model = Quadratic().eval()
    data = Loud(10)
    out = tmp_path / "run.zarr"
    with pytest.raises(Float16RangeError, match=r"saliency's maps of items 4-7 reach \|value\| = .*65504.*float32"):
        run(model, data, out, batch_size=4, dtype="float16")
    store = ak.open_store(out)
    assert store.batches_done.tolist() == [True, False, False]  # the batch before is kept, nothing is inf
    assert not np.isinf(np.asarray(store["saliency"])).any()
    data.loud = 0  # the first item already: refused by the probe, before anything is written
    with pytest.raises(Float16RangeError, match="items 0-0"):
        run(model, data, tmp_path / "probe.zarr", batch_size=4, dtype="float16")
    assert not (tmp_path / "probe.zarr").exists()
    assert run(model, data, tmp_path / "f32.zarr", batch_size=4).complete  # float32 stores them


class Tensors(torch.utils.data.TensorDataset):
    """A TensorDataset subclass: read item by item (the sliced path is for TensorDataset itself)."""


@pytest.mark.parametrize("workers", [0, 2])
def test_a_tensor_dataset_is_sliced_and_equals_item_by_item(model, tmp_path, workers):
    x = stacked(10)
    labels = torch.tensor([Numbered().label(i) for i in range(10)])
    masks = torch.stack([Numbered().mask(i) for i in range(10)])[:, None]  # (N, 1, H, W): also a mask form
    sliced = run(model, torch.utils.data.TensorDataset(x, labels, masks), tmp_path / "a.zarr", ["saliency"],
                 batch_size=4, num_workers=workers, metrics=["pointing_game"])
    per_item = run(model, Tensors(x, labels, masks), tmp_path / "b.zarr", ["saliency"], batch_size=4,
                   metrics=["pointing_game"])
    np.testing.assert_array_equal(np.asarray(sliced["saliency"]), np.asarray(per_item["saliency"]))
    np.testing.assert_array_equal(sliced.labels, labels.numpy())
    np.testing.assert_array_equal(sliced.metrics["saliency"]["pointing_game"],
                                  per_item.metrics["saliency"]["pointing_game"])
    with pytest.raises(InputError, match="item 0 of the data has the label"):  # as item by item
        run(model, torch.utils.data.TensorDataset(x, labels.float()), tmp_path / "c.zarr", batch_size=4)


def test_recode_store_writes_the_chunks_a_run_with_those_settings_writes(model, tmp_path):
    from attribkit.datasets.recode import recode_store

    data = Numbered(10, unreadable=(3,))
    run(model, data, tmp_path / "f32.zarr", ["saliency", "gradcam"], batch_size=4)
    direct = run(model, data, tmp_path / "direct.zarr", ["saliency", "gradcam"], batch_size=4, dtype="float16",
                 compressor="zstd")
    copy = recode_store(tmp_path / "f32.zarr", tmp_path / "copy.zarr", dtype="float16", compressor="zstd")
    assert copy.complete and copy.settings == direct.settings and copy.layers == direct.layers
    assert copy.verify().ok and copy.verify().batches_verified == 3
    assert [r["inputs"] for r in copy.records()] == [r["inputs"] for r in direct.records()]
    for method in ("saliency", "gradcam"):
        folder = f"maps/{method}/c"
        chunks = sorted(p.relative_to(tmp_path / "direct.zarr") for p in (tmp_path / "direct.zarr" / folder).rglob("*")
                        if p.is_file())
        assert len(chunks) == 3
        for chunk in chunks:
            assert (tmp_path / "copy.zarr" / chunk).read_bytes() == (tmp_path / "direct.zarr" / chunk).read_bytes()
    np.testing.assert_array_equal(copy.ids, direct.ids)
    np.testing.assert_array_equal(copy.labels, direct.labels)
    assert copy.skipped == direct.skipped
    with pytest.raises(StoreError, match="the source itself"):
        recode_store(tmp_path / "f32.zarr", tmp_path / "f32.zarr", dtype="float16")
