"""Methods that multiply the batch run memory-bounded chunks of rows by default
(attribkit.torch.chunking), with the maps of one unchunked call."""


import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.testing import assert_model_untouched, forward_rows
from attribkit.torch.chunking import ActivationMeter, parse_size, rows_per_chunk
from attribkit.torch.noise import NoiseTunnel


def test_sizes_and_rows():
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size(" 1.5 gib ") == 3 * 2**29
    assert parse_size("1e6") == 10**6
    for bad in ("lots", "0", "-1GB", "3 parsecs"):
        with pytest.raises(ak.InvalidOptionError, match="ATTRIBKIT_MEMORY_BUDGET"):
            parse_size(bad)
    assert rows_per_chunk(100, budget=1000) == 10
    assert rows_per_chunk(10**6, least=4, budget=1000) == 4
    assert rows_per_chunk(1, budget=46, total=100) == 34  # 34 + 34 + 32, not 46 + 46 + 8
    assert rows_per_chunk(1, budget=46, total=20) == 20


def test_meter_counts_what_a_backward_keeps():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Flatten(),
                        nn.Linear(4 * 6 * 6, 5))
    x = torch.randn(2, 3, 6, 6)
    with ActivationMeter(net) as meter, torch.no_grad():
        net(x)
    conv, linear, row = 4 * 36 * 4, 5 * 4, 3 * 36 * 4  # bytes per row; ReLU in place, Flatten a view
    assert meter.row_bytes(x, grad=True) == conv + linear + row
    assert meter.row_bytes(x, grad=False) == 2 * (row + conv) + row  # the conv's input + output
    assert ActivationMeter(lambda b: b).row_bytes(x, grad=False) == 32 * row  # opaque: a factor


def test_noise_tunnel_chunks_with_the_maps_of_one_call(tiny_cnn, images, monkeypatch):
    tunnel = NoiseTunnel("vargrad", n_samples=5, stdev=0.2, seed=3)
    whole = ak.explain(tiny_cnn, images, [0, 1, 2, 3], method="saliency", noise_tunnel=tunnel,
                       batch_size=20)
    monkeypatch.setenv("ATTRIBKIT_MEMORY_BUDGET", "1")  # one noisy copy per chunk
    with assert_model_untouched(tiny_cnn), forward_rows(tiny_cnn) as rows:
        chunked = ak.explain(tiny_cnn, images, [0, 1, 2, 3], method="saliency", noise_tunnel=tunnel)
    assert rows == [1] + [1] * 20  # the measuring forward of one image, then 20 copies one by one
    torch.testing.assert_close(chunked.values, whole.values)  # (test_gradients: vs a brute-force loop)


def test_scorecam_default_chunks_by_budget(tiny_cnn, images, monkeypatch):
    reference = ak.explain(tiny_cnn, images, method="scorecam", forward_batch_size=64)
    monkeypatch.setenv("ATTRIBKIT_MEMORY_BUDGET", "1")
    with forward_rows(tiny_cnn) as rows:
        small = ak.explain(tiny_cnn, images, method="scorecam")
    assert max(rows) == len(images)  # the layer probe and the activations forward; masks one by one
    assert rows.count(1) >= 4 * 16  # 4 images x 16 channels, one masked copy per forward
    torch.testing.assert_close(small.values, reference.values)


def test_occlusion_default_chunks_by_budget(tiny_cnn, images, monkeypatch):
    reference = ak.explain(tiny_cnn, images, method="occlusion", window=4, stride=2, batch_size=500)
    monkeypatch.setenv("ATTRIBKIT_MEMORY_BUDGET", "1")
    with forward_rows(tiny_cnn) as rows:
        small = ak.explain(tiny_cnn, images, method="occlusion", window=4, stride=2)
    assert rows[0] == 4 and set(rows[1:]) == {1}  # the clean batch, then one copy per forward
    assert len(rows) == 1 + 1 + 4 * 25  # + the measuring forward; 5 x 5 windows per image
    torch.testing.assert_close(small.values, reference.values)


@pytest.mark.parametrize("bad", [True, 0, 2.5])
def test_scorecam_forward_batch_size_is_still_checked(tiny_cnn, images, bad):
    with assert_model_untouched(tiny_cnn), pytest.raises(ak.InvalidOptionError,
                                                         match="forward_batch_size must be a positive"):
        ak.explain(tiny_cnn, images, method="scorecam", forward_batch_size=bad)
