"""One run record per call, also for a call interrupted (Ctrl-C from the model) or failed
(issue 28); a write failure is a StoreWriteError that says what is kept and that the
same call resumes."""

import errno

import numpy as np
import pytest
import torch

import attribkit as ak
from attribkit.cli import main
from attribkit.datasets.store import AttributionStore
from attribkit.errors import AttribkitError, StoreWriteError
from attribkit.testing import TinyCNN, assert_model_untouched
from tests.dataset_support import CLASSES, Numbered, small_model


class Stopping(TinyCNN):
    """Raises ``error`` from its forward on a batch of 2 once ``after`` such batches passed."""

    def __init__(self, after, error):
        torch.manual_seed(0)
        super().__init__(classes=CLASSES)
        self.after, self.error, self.seen = after, error, 0
        self.eval()

    def forward(self, x):
        if len(x) == 2:
            self.seen += 1
            if self.error is not None and self.seen > self.after:
                raise self.error
        return super().forward(x)


def run(model, out, n=10):
    return ak.explain_dataset(model, Numbered(n), ["saliency"], out, batch_size=2, progress=False)


def images_stored(out):
    return int(ak.open_store(out).done.sum())


def test_ctrl_c_from_the_model_leaves_a_record_and_the_resume_adds_its_own(tmp_path):
    out = tmp_path / "run.zarr"
    model = Stopping(3, KeyboardInterrupt())
    with assert_model_untouched(model), pytest.raises(KeyboardInterrupt, match="interrupted: 6 of 10 images"):
        run(model, out)
    first = ak.open_store(out).runs
    assert len(first) == 1 and first[0]["status"] == "interrupted"
    assert first[0]["images"] == images_stored(out) == 6 and first[0]["seconds"] > 0
    model.error = None
    runs = run(model, out).runs
    assert [r["status"] for r in runs] == ["interrupted", "finished"]
    assert [r["images"] for r in runs] == [6, 4] and sum(r["images"] for r in runs) == 10


def test_another_error_leaves_a_failed_record_and_is_raised_as_it_was(tmp_path):
    out = tmp_path / "run.zarr"
    with pytest.raises(ZeroDivisionError, match="the model broke"):
        run(Stopping(1, ZeroDivisionError("the model broke")), out)
    (record,) = ak.open_store(out).runs
    assert record["status"] == "failed" and record["error"] == "ZeroDivisionError: the model broke"
    assert record["images"] == images_stored(out) == 2


def test_a_write_failure_is_a_store_write_error_that_says_the_call_resumes(tmp_path, monkeypatch):
    out = tmp_path / "run.zarr"
    original = AttributionStore.write_batch

    def full_disk(self, batch, start, columns, inputs=None):
        if batch == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(out / "maps"))
        original(self, batch, start, columns, inputs)

    monkeypatch.setattr(AttributionStore, "write_batch", full_disk)
    with pytest.raises(StoreWriteError) as caught:
        run(small_model(), out)
    message = str(caught.value)
    assert isinstance(caught.value, OSError) and isinstance(caught.value, AttribkitError)
    assert message.startswith("writing batch 2 to ") and "No space left on device" in message
    assert message.endswith(f"4 of 10 images are stored in {out}, and the same call or command resumes from there")
    assert "\n" not in message
    assert ak.open_store(out).runs[-1]["status"] == "failed"
    monkeypatch.undo()
    resumed = run(small_model(), out)
    assert resumed.complete and resumed.runs[-1]["images"] == 6
    expected = ak.explain(small_model(), torch.stack([Numbered(10)[i][0] for i in range(10)]), method="saliency")
    np.testing.assert_allclose(np.asarray(resumed["saliency"]), expected.numpy(), rtol=1e-5, atol=1e-7)


def test_the_cli_prints_a_write_failure_as_one_line(tmp_path, monkeypatch, capsys):
    from tests.test_datasets_cli import ROOT, make_folder

    monkeypatch.chdir(ROOT)

    def too_large(self, batch, start, columns, inputs=None):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(AttributionStore, "write_batch", too_large)
    folder = make_folder(tmp_path / "images", per_class=2)
    code = main(["explain-dataset", str(folder), "--model", "tests.dataset_support:small_model", "--methods",
                 "saliency", "--size", "16", "--batch-size", "2", "--workers", "0", "--no-progress",
                 "--out", str(tmp_path / "run.zarr")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("attribkit: error: writing batch 0 to ") and "File too large" in err
    assert err.endswith("the same call or command resumes from there")
