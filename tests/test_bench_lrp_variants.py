"""The bench's LRP variants by kind of model (issue 26): a CNN gets the CNN composites
(``lrp``, ``lrp.epsilon_gamma_box``, ...), a transformer ``lrp.attnlrp`` and
``lrp.cp_lrp``; names asked for are all run, and a composite that cannot run on the
model gives its error in every row of the run."""

import torch

import attribkit as ak
from attribkit.bench.config import BenchConfig
from attribkit.bench.selection import bench_method, choose_methods, runnable
from attribkit.bench.subject import Subject
from attribkit.testing import TinyCNN
from tests.test_vit_models import timm_vit, vit_images

CNN_VARIANTS = ["lrp", "lrp.epsilon_gamma_box", "lrp.epsilon_alpha2_beta1", "lrp.epsilon_plus"]


def _subject(model: torch.nn.Module, x: torch.Tensor) -> Subject:
    return Subject("m", model, x, torch.zeros(len(x), dtype=torch.long), None)


def _lrp_names(specs) -> list[str]:
    return [s.name for s in specs if s.family == "lrp"]


def test_each_kind_of_model_gets_its_composites(tmp_path):
    cnn, vit = _subject(TinyCNN().eval(), torch.rand(2, 3, 32, 32)), _subject(timm_vit(), vit_images(2))
    quick = choose_methods(BenchConfig(out=tmp_path, task="shapes"))
    full = choose_methods(BenchConfig(out=tmp_path, task="shapes", profile="full"))
    assert _lrp_names(runnable(quick, cnn, print)) == CNN_VARIANTS[:2]
    assert _lrp_names(runnable(full, cnn, print)) == CNN_VARIANTS
    for chosen in (quick, full):
        kept = runnable(chosen, vit, print)
        assert _lrp_names(kept) == ["lrp.attnlrp", "lrp.cp_lrp"]
        assert {s.options["composite"] for s in kept if s.family == "lrp"} == {"attnlrp", "cp_lrp"}
    asked = [bench_method(m) for m in ("lrp", "lrp.epsilon_plus", "lrp.cp_lrp")]
    assert runnable(asked, cnn, print, asked=True) == asked  # names asked for are run
    assert runnable(asked, vit, print, asked=True) == asked


def test_the_left_out_default_is_attnlrp_on_a_vit():
    # ``lrp`` is left out on a transformer because it computes what ``lrp.attnlrp`` does
    model, x, t = timm_vit(), vit_images(2), torch.tensor([0, 1])
    default = ak.explain(model, x, t, method="lrp").values
    variant = ak.explain(model, x, t, method=bench_method("lrp.attnlrp")).values
    cp = ak.explain(model, x, t, method=bench_method("lrp.cp_lrp")).values
    torch.testing.assert_close(default, variant, rtol=0, atol=0)
    assert not torch.allclose(cp, variant)  # CP-LRP is another rule on the softmax


def test_a_cnn_composite_asked_for_on_a_vit_gives_its_error_in_every_row(tmp_path, monkeypatch):
    import dataclasses

    from attribkit.bench.runner import run_bench
    from attribkit.bench.tasks import shapes_vit
    from attribkit.bench.vit_reference import ViTTrainConfig
    from tests.test_vit_bench import TINY

    monkeypatch.setenv("ATTRIBKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shapes_vit, "TASK", dataclasses.replace(shapes_vit.TASK, config=ViTTrainConfig(**TINY)))
    methods = ["lrp.attnlrp", "lrp.cp_lrp", "lrp.epsilon_gamma_box"]
    records = run_bench(BenchConfig(out=tmp_path / "out", task="shapes-vit", methods=methods, n_images=4,
                                    metrics=["relevance_mass_accuracy"]), progress=False, log=lambda s: None)
    scored = {(r["method"], r["metric"]): r for r in records}
    for method in ("lrp.attnlrp", "lrp.cp_lrp"):
        assert "error" not in scored[method, "relevance_mass_accuracy"]
        assert scored[method, "relevance_mass_accuracy"]["n"] == 4
        assert scored[method, "speed"]["floor"] == "forward+backward"
    for metric in ("speed", "relevance_mass_accuracy"):
        error = scored["lrp.epsilon_gamma_box", metric]["error"]
        assert error.startswith("LRPRuleError") and "LayerNorm" in error


def test_an_error_row_first_leaves_the_arrows_and_the_best_right():
    # the ViT bench's first method (ablationcam) has error rows: the direction comes from the others
    from attribkit.bench.report import markdown

    records = [{"method": "a_fails", "metric": "deletion_auc", "error": "LayerError: no (B, C, h, w) layer"},
               *({"method": m, "metric": "deletion_auc", "mean": v, "sem": 0.01, "n": 4, "higher_is_better": False}
                 for m, v in (("b", 0.2), ("c", 0.6)))]
    text = markdown(records)
    assert "deletion_auc ↓" in text and "**0.200" in text and "**0.600" not in text
    assert "| a_fails | error |" in text
