"""Captum's integrated gradients runs its steps in memory-bounded chunks by default,
with the same maps as Captum called directly; a bar counts the rows."""


import pytest
import torch
from captum.attr import IntegratedGradients, LayerConductance

import attribkit as ak
from attribkit.testing import assert_model_untouched, forward_rows
from attribkit_captum.kernels import internal_batch_size
from attribkit_captum.table import SUPPORTED


def test_ig_chunks_by_default_and_equals_captum(model, images, targets, monkeypatch):
    monkeypatch.setenv("ATTRIBKIT_MEMORY_BUDGET", "1")  # the least a chunk can be: one step
    with assert_model_untouched(model), forward_rows(model) as rows:
        r = ak.explain(model, images, targets, method="captum.integrated_gradients", n_steps=8)
    assert rows == [3] + [3] * 8  # the probe, then one step of the 3 images per forward
    ig = IntegratedGradients(model)
    chunked = ig.attribute(images, target=targets, n_steps=8, internal_batch_size=3)
    torch.testing.assert_close(r.values, chunked)
    torch.testing.assert_close(r.values, ig.attribute(images, target=targets, n_steps=8),
                               rtol=1e-5, atol=1e-7)


def test_ig_runs_one_batch_when_it_fits(model, images, targets):
    with forward_rows(model) as rows:
        r = ak.explain(model, images, targets, method="captum.integrated_gradients", n_steps=8)
    assert rows == [3, 24]
    expected = IntegratedGradients(model).attribute(images, target=targets, n_steps=8)
    torch.testing.assert_close(r.values, expected)


def test_an_explicit_internal_batch_size_wins(model, images, targets, monkeypatch):
    monkeypatch.setenv("ATTRIBKIT_MEMORY_BUDGET", "1")
    with forward_rows(model) as rows:
        ak.explain(model, images, targets, method="captum.integrated_gradients", n_steps=8,
                   internal_batch_size=12)
    assert rows == [3, 12, 12]


def test_conductance_gets_two_steps_per_chunk(model, images, targets, monkeypatch):
    monkeypatch.setenv("ATTRIBKIT_MEMORY_BUDGET", "1")
    r = ak.explain(model, images, targets, method="captum.layer_conductance", layer="features.3",
                   n_steps=6)
    expected = LayerConductance(model, model.features[3]).attribute(
        images, target=targets, n_steps=6, internal_batch_size=6)
    torch.testing.assert_close(r.values, expected)


def test_internal_batch_size_rule():
    ig = next(e for e in SUPPORTED if e.cls == "IntegratedGradients")
    conductance = next(e for e in SUPPORTED if e.cls == "LayerConductance")
    assert internal_batch_size(ig, 50, 4, None, row_bytes=2**30 // 8) == 8       # 8 rows fit
    assert internal_batch_size(ig, 50, 4, None, row_bytes=2**30) == 4            # one step at least
    assert internal_batch_size(conductance, 50, 4, None, row_bytes=2**30) == 8   # two steps
    assert internal_batch_size(ig, 50, 4, None, row_bytes=1) is None             # all fit: one batch
    assert internal_batch_size(ig, 50, 4, 6, row_bytes=1) == 6                   # batch_size given


def test_a_bad_budget_is_one_clear_error(model, images, monkeypatch):
    monkeypatch.setenv("ATTRIBKIT_MEMORY_BUDGET", "lots")
    with assert_model_untouched(model), pytest.raises(ak.InvalidOptionError,
                                                      match="ATTRIBKIT_MEMORY_BUDGET"):
        ak.explain(model, images, method="captum.integrated_gradients", n_steps=4)


def test_ig_shows_a_labelled_bar(model, images, monkeypatch, capsys):
    monkeypatch.setenv("ATTRIBKIT_PROGRESS", "always")
    ak.explain(model, images, method="captum.integrated_gradients", n_steps=4)
    err = capsys.readouterr().err
    assert "captum.integrated_gradients: rows" in err and "/12 " in err  # 4 steps x 3 images
