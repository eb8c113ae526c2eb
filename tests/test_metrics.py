"""Metrics against hand-computed values and peer implementations on tiny inputs."""

import pytest
import torch

from attribkit.evaluation import functional as M


def one_pixel_model(pixel, scale=10.0):
    """Two classes; the class-0 logit is ``scale * x[0, pixel]``, class 1 is 0."""

    def predict(x):
        v = x[:, 0].flatten(1)[:, pixel] * scale
        return torch.stack([v, torch.zeros_like(v)], 1)

    return predict


def test_localisation_metrics_by_hand():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[:, 1:3, 1:3] = True
    perfect = masks.float()
    uniform = torch.ones(2, 4, 4)
    outside = (~masks).float()
    assert M.relevance_mass_accuracy(perfect, masks).tolist() == [1.0, 1.0]
    assert M.relevance_mass_accuracy(uniform, masks).tolist() == [0.25, 0.25]
    assert M.relevance_mass_accuracy(-perfect, masks).tolist() == [0.0, 0.0]  # positive part only
    assert M.relevance_rank_accuracy(perfect, masks).tolist() == [1.0, 1.0]
    assert M.relevance_rank_accuracy(outside, masks).tolist() == [0.0, 0.0]
    half = torch.zeros(2, 4, 4)
    half[:, 1, 1:3] = 2.0   # 2 of the 4 mask pixels on top...
    half[:, 0, 0:2] = 1.0   # ...then 2 outside
    assert M.relevance_rank_accuracy(half, masks).tolist() == [0.5, 0.5]
    point = torch.zeros(2, 4, 4)
    point[0, 2, 2] = 1
    point[1, 0, 3] = 1
    assert M.pointing_game(point, masks).tolist() == [1.0, 0.0]


def test_trapezoid_auc_by_hand():
    curves = torch.tensor([[1.0, 0.5, 0.0], [1.0, 1.0, 1.0]])
    assert M.trapezoid_auc(curves).tolist() == [0.5, 1.0]


def test_perfect_attribution_gets_the_best_deletion_auc():
    h = w = 4
    pixel = 5
    predict = one_pixel_model(pixel)
    images = torch.ones(1, 1, h, w)
    target = torch.tensor([0])
    perfect = torch.zeros(1, h, w)
    perfect.view(1, -1)[0, pixel] = 1
    auc, curve = M.deletion_insertion(predict, images, perfect, target, steps=16, baseline=0.0)
    p0 = torch.sigmoid(torch.tensor(10.0)).item()
    # step 0 keeps the pixel (p0); from step 1 on (1 of 16 pixels deleted) it is 0 -> p = 0.5
    assert curve[0, 0].item() == pytest.approx(p0)
    assert torch.allclose(curve[0, 1:], torch.full((16,), 0.5))
    assert auc.item() == pytest.approx((p0 + 0.5) / 32 + 15 * 0.5 / 16)
    torch.manual_seed(0)
    for _ in range(5):  # any other ranking deletes the pixel later
        other = torch.rand(1, h, w)
        if other.view(-1).argmax() == pixel:
            continue
        assert M.deletion_insertion(predict, images, other, target, steps=16, baseline=0.0)[0] > auc


def test_insertion_of_the_right_pixel_first_is_best():
    predict = one_pixel_model(0)
    images = torch.zeros(1, 1, 4, 4)
    images[0, 0, 0, 0] = 1.0
    rel = images[:, 0].clone()
    auc, curve = M.deletion_insertion(predict, images, rel, torch.tensor([0]), mode="insertion", steps=16)
    assert curve[0, 1:].min().item() == pytest.approx(torch.sigmoid(torch.tensor(10.0)).item())
    worst, _ = M.deletion_insertion(predict, images, -rel, torch.tensor([0]), mode="insertion", steps=16)
    assert auc > worst


def test_spearman_matches_scipy_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    a = torch.randint(0, 5, (3, 30)).float()
    b = a + torch.randn(3, 30)
    ours = M.spearman(a, b)
    for i in range(3):
        assert ours[i].item() == pytest.approx(scipy_stats.spearmanr(a[i], b[i]).statistic, abs=1e-6)


def test_ssim_matches_scikit_image():
    skm = pytest.importorskip("skimage.metrics")
    torch.manual_seed(0)
    a = torch.rand(2, 24, 24)
    b = (a + 0.2 * torch.randn(2, 24, 24)).clamp(0, 1)
    ours = M.ssim(a, b)
    for i in range(2):
        ref = skm.structural_similarity(a[i].numpy(), b[i].numpy(), data_range=1.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert ours[i].item() == pytest.approx(ref, abs=1e-5)
    assert M.ssim(a, a).tolist() == pytest.approx([1.0, 1.0])


def test_noisy_linear_imputation_recovers_a_linear_ramp():
    h = w = 16
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    ramp = (0.02 * yy + 0.03 * xx)[None, None]
    removed = torch.zeros(1, 1, h, w, dtype=torch.bool)
    removed[..., 4:12, 5:11] = True
    filled = M.noisy_linear_impute(ramp, removed, noise=0.0, iterations=600)
    assert (filled - ramp).abs().max() < 1e-4
    noisy = M.noisy_linear_impute(ramp, removed, noise=0.05, iterations=600,
                                  generator=torch.Generator().manual_seed(0))
    assert torch.equal(noisy[~removed.expand_as(noisy)], ramp[~removed.expand_as(ramp)])
    assert 0.03 < (noisy - ramp)[removed.expand_as(ramp)].std() < 0.07


def test_road_morf_beats_lerf_for_the_right_pixel():
    predict = one_pixel_model(9, scale=8.0)
    images = torch.zeros(1, 1, 6, 6)
    images.view(-1)[9] = 1.0
    rel = images[:, 0].clone()
    morf, _ = M.road(predict, images, rel, torch.tensor([0]), order="morf", noise=0.0)
    lerf, _ = M.road(predict, images, rel, torch.tensor([0]), order="lerf", noise=0.0)
    assert morf < lerf


def test_pixel_relevance_sums_channels_and_upsamples():
    values = torch.zeros(1, 2, 2, 2)
    values[0, :, 1, 1] = 1.0
    rel = M.pixel_relevance(values, (8, 8))
    assert rel.shape == (1, 8, 8)
    assert rel[0, 6, 6] == rel.max() and rel.max() == pytest.approx(2.0)


def test_default_deletion_baseline_is_the_blurred_image():
    images = torch.rand(2, 3, 8, 8)
    seen = []

    def predict(x):
        seen.append(x.clone())
        return torch.zeros(len(x), 2)

    M.deletion_insertion(predict, images, torch.rand(2, 8, 8), torch.tensor([0, 1]), steps=4)
    last = seen[0].view(2, 5, 3, 8, 8)[:, -1]  # everything deleted
    torch.testing.assert_close(last, M.gaussian_blur(images, 5.0))
