"""The bench on transformers: methods whose needs the model cannot meet (the attention
family on a CNN) are left out quietly, and the ``shapes-vit`` task (a small timm ViT
trained on the synthetic ground-truth data, cached) resolves and trains."""

import torch

import attribkit as ak
from attribkit.bench.selection import runnable
from attribkit.bench.subject import Subject
from attribkit.testing import TinyCNN
from attribkit.torch.attention import has_attention
from tests.test_vit_models import timm_vit, torchvision_vit, vit_images


def _subject(model: torch.nn.Module, size: int) -> Subject:
    x = torch.rand(2, 3, size, size)
    return Subject("m", model, x, torch.zeros(2, dtype=torch.long), None)


def test_has_attention_finds_vits_and_not_cnns():
    assert has_attention(timm_vit(), vit_images(1))
    assert has_attention(torchvision_vit(), vit_images(1))
    assert not has_attention(TinyCNN().eval(), torch.rand(1, 3, 32, 32))


def test_attention_methods_are_left_out_quietly_on_a_cnn():
    specs = [ak.get_method(m) for m in ("saliency", "gradcam", "raw_attention", "generic_attention")]
    lines: list[str] = []
    kept = runnable(specs, _subject(TinyCNN().eval(), 32), lines.append)
    assert [s.name for s in kept] == ["saliency", "gradcam"] and lines == []
    kept = runnable(specs, _subject(TinyCNN().eval(), 32), lines.append, asked=True)
    assert len(kept) == 2 and len(lines) == 1 and "raw_attention" in lines[0]
    assert runnable(specs, _subject(timm_vit(), 32), lines.append) == specs


TINY = dict(size=32, patch=4, dim=16, depth=2, heads=2, n_train=64, n_test=32, epochs=1, batch=32)


def test_synthetic_vit_trains_reproducibly_and_is_cached(tmp_path, monkeypatch):
    from attribkit.bench.vit_reference import ViTTrainConfig, fit_vit, vit_reference_model
    from attribkit.torch.layout import token_layout

    monkeypatch.setenv("ATTRIBKIT_CACHE", str(tmp_path))
    config = ViTTrainConfig(**TINY)
    model, record = vit_reference_model(config)
    assert record["path"].startswith(str(tmp_path)) and 0 <= record["test_accuracy"] <= 1
    assert token_layout(model, (32, 32)).grid == (8, 8) and token_layout(model, (32, 32)).prefix_tokens == 1
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.modules())  # GELU only
    again, _ = vit_reference_model(config)  # from the cache
    refit, _ = fit_vit(config)  # from scratch: the same weights
    for a, b, c in zip(model.state_dict().values(), again.state_dict().values(), refit.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert config.key() != ViTTrainConfig(**{**TINY, "seed": 1}).key()


def test_bench_runs_on_synthetic_vit(tmp_path, monkeypatch):
    import dataclasses

    from attribkit.bench.runner import BenchConfig, run_bench
    from attribkit.bench.tasks import shapes_vit
    from attribkit.bench.vit_reference import ViTTrainConfig

    monkeypatch.setenv("ATTRIBKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shapes_vit, "TASK", dataclasses.replace(shapes_vit.TASK, config=ViTTrainConfig(**TINY)))
    methods = ["raw_attention", "attention_rollout", "generic_attention", "gradcam", "saliency", "random"]
    records = run_bench(BenchConfig(out=tmp_path / "out", task="shapes-vit", methods=methods, n_images=4,
                                    metrics=["pointing_game", "relevance_mass_accuracy"]),
                        progress=False, log=lambda s: None)
    scored = {(r["method"], r["metric"]): r for r in records}
    for method in methods:
        for metric in ("pointing_game", "relevance_mass_accuracy"):
            assert "error" not in scored[method, metric] and scored[method, metric]["n"] == 4
    assert scored["generic_attention", "speed"]["floor"] == "forward+backward"  # it takes gradients
    assert scored["raw_attention", "speed"]["floor"] == "forward"
