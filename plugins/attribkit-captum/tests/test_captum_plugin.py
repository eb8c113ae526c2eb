"""Registration, Captum coverage, a missing Captum, options and the adapter's semantics."""

import random
import subprocess
import sys
import warnings

import captum
import captum.attr as A
import numpy as np
import pytest
import torch

import attribkit as ak
import attribkit_captum
from attribkit.errors import (
    InputError,
    InvalidOptionError,
    LayerError,
    MissingDependencyError,
    UnknownMethodError,
)
from attribkit.host import Host
from attribkit.hookspecs import hookimpl
from attribkit.registry import MethodSpec
from attribkit.torch.noise import NoiseTunnel
from attribkit_captum import defaults, exports, table

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

NAMES = [e.method_name for e in table.SUPPORTED]


# ---- registration and coverage -----------------------------------------------------------

def test_registered_set_equals_captum_exports_minus_the_documented_unsupported():
    exported = exports.captum_attribution_classes()
    registered = {e.cls for e in table.SUPPORTED}
    assert not registered & set(table.UNSUPPORTED)
    unknown = exported - registered - set(table.UNSUPPORTED)
    assert not unknown, f"Captum exports classes the table does not cover: {sorted(unknown)}"
    assert registered <= exported, f"gone from Captum: {sorted(registered - exported)}"
    assert set(table.UNSUPPORTED) <= exported
    report = attribkit_captum.coverage()
    assert report.unknown == () and report.missing == ()
    assert set(report.registered) == registered


def test_every_primary_and_layer_class_is_registered():
    for name in A.__all__:
        obj = getattr(A, name)
        if isinstance(obj, type) and issubclass(obj, A.Attribution) and \
                not name.startswith(("Neuron", "LLM", "Remote")) and \
                name not in ("Attribution", "GradientAttribution", "PerturbationAttribution",
                             "LayerAttribution", "NoiseTunnel", "LimeBase",
                             "DataLoaderAttribution"):
            assert name in table.BY_CLASS, name
    assert "NoiseTunnel" in table.UNSUPPORTED and "deliberately" in table.UNSUPPORTED["NoiseTunnel"]


def test_a_new_captum_class_is_reported_when_a_factory_runs(monkeypatch):
    monkeypatch.delitem(table.UNSUPPORTED, "NoiseTunnel")
    monkeypatch.setattr(exports, "_checked", False)
    with pytest.warns(exports.CaptumCoverageWarning, match="NoiseTunnel"):
        ak.get_method("captum.saliency").load()
    assert attribkit_captum.coverage().unknown == ("NoiseTunnel",)


def test_methods_are_listed_with_family_and_origin_plugin():
    specs = {s.name: s for s in ak.methods() if s.plugin == "captum"}
    assert sorted(specs) == sorted(NAMES)
    info = next(p for p in ak.plugins() if p.name == "captum")
    assert info.status == "loaded" and info.distribution == "attribkit-captum"
    assert sorted(info.methods) == sorted(NAMES)
    assert specs["captum.integrated_gradients"].family == "gradient"
    assert specs["captum.layer_gradcam"].family == "cam"
    assert specs["captum.layer_gradcam"].output == "layer"
    assert specs["captum.occlusion"].family == "perturbation"
    assert specs["captum.occlusion"].needs == ("forward",)
    assert specs["captum.layer_activation"].family == "other"
    assert ak.get_method("layer_ig") is specs["captum.layer_integrated_gradients"]
    assert ak.get_method("saliency").plugin != "captum"   # built-in keeps its name
    assert ak.get_method("occlusion").plugin != "captum"
    assert ak.get_method("ig").plugin != "captum"         # so does the built-in integrated_gradients
    assert attribkit_captum.dropped_aliases() == {"captum.integrated_gradients": ("integrated_gradients", "ig")}


def test_cli_lists_them(capsys):
    from attribkit.cli import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "captum.integrated_gradients" in out and "ig" in out


def test_listing_imports_neither_torch_nor_captum():
    code = ("import sys, attribkit as ak\n"
            "from attribkit.cli import main\n"
            "assert main(['methods']) == 0\n"
            "assert any(s.plugin == 'captum' for s in ak.methods())\n"
            "bad = [m for m in ('torch', 'captum') if m in sys.modules]\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "captum.lime" in proc.stdout


def test_an_alias_another_plugin_owns_is_left_out_not_fatal():
    class Other:
        @hookimpl
        def register_methods(self, register):
            register(MethodSpec(name="other.layer_ig", aliases=("layer_ig",), family="gradient",
                                factory=lambda: None))

    host = Host(builtins=True, entry_points=False)
    host.add_plugin(Other(), "other")
    info = host.add_plugin(attribkit_captum, "captum", strict=True)
    assert info.status == "loaded" and len(info.methods) == len(NAMES)
    assert host.registry.get("layer_ig").name == "other.layer_ig"
    assert host.registry.get("layer_integrated_gradients").name == "captum.layer_integrated_gradients"
    assert attribkit_captum.dropped_aliases()["captum.layer_integrated_gradients"] == ("layer_ig",)


# ---- without Captum ----------------------------------------------------------------------

@pytest.fixture
def no_captum(monkeypatch):
    """Make `import captum` fail as if it were not installed."""
    for name in [m for m in sys.modules if m == "captum" or m.startswith("captum.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "captum", None)


def test_without_captum_methods_are_listed_and_say_what_to_install(no_captum, model, images):
    specs = [s for s in ak.methods() if s.plugin == "captum"]
    assert len(specs) == len(NAMES)
    assert all(s.description.startswith("[needs captum") for s in specs)
    with pytest.raises(MissingDependencyError, match=r"pip install 'attribkit\[captum\]'"):
        ak.explain(model, images, method="captum.integrated_gradients")
    with pytest.raises(ImportError):                 # MissingDependencyError is an ImportError
        ak.explain(model, images, method="captum.saliency")
    r = ak.explain(model, images, method="saliency")  # attribkit itself still works
    assert r.values.shape == images.shape
    from attribkit_captum.metrics import infidelity

    with pytest.raises(MissingDependencyError, match="pip install"):
        infidelity(model, images, r)


def test_too_old_captum_is_reported(monkeypatch, model, images):
    monkeypatch.setattr(captum, "__version__", "0.7.0")
    with pytest.raises(MissingDependencyError, match="captum>=0.8, found captum 0.7.0"):
        ak.explain(model, images, method="captum.integrated_gradients")


# ---- options and semantics ---------------------------------------------------------------

def test_options_are_validated(model, images):
    with pytest.raises(InvalidOptionError, match="did you mean 'n_steps'"):
        ak.explain(model, images, method="captum.integrated_gradients", n_step=10)
    with pytest.raises(InvalidOptionError, match="expects int"):
        ak.explain(model, images, method="captum.integrated_gradients", n_steps="ten")
    with pytest.raises(InvalidOptionError, match="'baselines' must be None, 'zeros', 'blur'"):
        ak.explain(model, images, method="captum.integrated_gradients", baselines="purple")
    with pytest.raises(InvalidOptionError, match="'group' must be one of"):
        ak.explain(model, images, method="captum.layer_feature_ablation", group="pixels")


def test_captum_arguments_pass_through(model, images, targets):
    r = ak.explain(model, images, targets, method="captum.integrated_gradients", n_steps=7,
                   integration_method="riemann_trapezoid", baselines=0.5)
    ref = A.IntegratedGradients(model).attribute(images, baselines=0.5, target=targets,
                                                 n_steps=7, method="riemann_trapezoid")
    torch.testing.assert_close(r.values, ref, rtol=0, atol=0)
    r = ak.explain(model, images, targets, method="captum.occlusion",
                   sliding_window_shapes=(4, 4), strides=2, baselines="blur")
    ref = A.Occlusion(model).attribute(images, sliding_window_shapes=(3, 4, 4),
                                       strides=(3, 2, 2), baselines=defaults.gaussian_blur(images),
                                       target=targets, perturbations_per_eval=10)
    torch.testing.assert_close(r.values, ref, rtol=0, atol=0)
    r = ak.explain(model, images, targets, method="captum.layer_gradcam",
                   layer="features.3", relu_attributions=True)
    ref = A.LayerGradCam(model, model.features[3]).attribute(images, target=targets,
                                                              relu_attributions=True)
    torch.testing.assert_close(r.values, ref, rtol=0, atol=0)
    assert r.layer == "features.3" and bool((r.values >= 0).all())


def test_target_none_explains_the_top_class(model, images):
    top = model(images).argmax(1)
    r = ak.explain(model, images, method="captum.deeplift")
    assert torch.equal(r.target, top)
    torch.testing.assert_close(r.values, A.DeepLift(model).attribute(images, target=top),
                               rtol=0, atol=0)


@pytest.mark.parametrize("method, make", [
    ("captum.integrated_gradients", lambda f: A.IntegratedGradients(f)),
    ("captum.feature_ablation", lambda f: A.FeatureAblation(f)),
])
def test_callable_target(method, make, model, images):
    diff = lambda s: s[:, 0] - s[:, 1]  # noqa: E731
    r = ak.explain(model, images, diff, method=method, perturbations_per_eval=1) \
        if "ablation" in method else ak.explain(model, images, diff, method=method)
    kwargs = {"feature_mask": torch.arange(64).view(1, 1, 8, 8)} if "ablation" in method else {}
    ref = make(lambda x: diff(model(x))).attribute(images, **kwargs)
    torch.testing.assert_close(r.values, ref, rtol=1e-6, atol=1e-7)
    assert r.target is None


def test_callable_target_on_methods_that_hook_the_model(model, images):
    diff = lambda s: s[:, 0] - s[:, 1]  # noqa: E731
    for method in ("captum.deeplift", "captum.lrp", "captum.layer_feature_permutation"):
        r = ak.explain(model, images, diff, method=method)
        assert r.values.shape[0] == 3 and r.target is None


def test_forward_only_methods_take_any_callable_model(model, images, targets):
    def predict(batch):  # not an nn.Module: a plain callable gets NumPy arrays, as everywhere
        assert isinstance(batch, np.ndarray)
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    r = ak.explain(predict, images, targets, method="captum.occlusion")
    ref = ak.explain(model, images, targets, method="captum.occlusion")
    torch.testing.assert_close(r.values, ref.values, rtol=0, atol=0)
    with pytest.raises(InputError, match="needs a torch.nn.Module"):
        ak.explain(predict, images, targets, method="captum.deeplift")


def test_seeded_methods_are_reproducible_and_leave_global_rngs_alone(model, images):
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    a = ak.explain(model, images, method="captum.gradient_shap", stdevs=0.1).values
    b = ak.explain(model, images, method="captum.gradient_shap", stdevs=0.1).values
    assert torch.equal(a, b)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    c = ak.explain(model, images, method="captum.gradient_shap", stdevs=0.1, seed=1).values
    assert not torch.equal(a, c)
    ak.explain(model, images, method="captum.gradient_shap", seed=None)  # uses the global RNG
    assert not torch.equal(torch.get_rng_state(), states[0])


class RowRecorder(torch.nn.Module):
    """Records the number of rows of every forward (a list mutated in place)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.rows = []

    def forward(self, x):
        self.rows.append(len(x))
        return self.inner(x)


@pytest.mark.parametrize("method, most", [
    ("captum.integrated_gradients", 2), ("captum.internal_influence", 2), ("captum.feature_ablation", 2),
    ("captum.kernel_shap", 2), ("captum.layer_feature_ablation", 2),
    ("captum.layer_conductance", 4),  # conductance differences steps: >= 2 steps per forward
])
def test_batch_size_bounds_the_rows_of_every_forward(method, most, model, images):
    recorder = RowRecorder(model)
    whole = ak.explain(recorder, images, [0, 1, 2], method=method).values
    recorder.rows.clear()
    chunked = ak.explain(recorder, images, [0, 1, 2], method=method, batch_size=2).values
    assert max(recorder.rows) == most
    torch.testing.assert_close(chunked, whole, rtol=1e-4, atol=1e-5)


def test_noise_tunnel_wraps_captum_methods(model, images):
    r = ak.explain(model, images, [0, 1, 2], method="captum.integrated_gradients", n_steps=5,
                   noise_tunnel=NoiseTunnel(n_samples=3, seed=0))
    assert r.values.shape == images.shape and r.meta["noise_tunnel"]["n_samples"] == 3


def test_layer_lrp_maps_containers_and_rejects_what_it_cannot(model, images):
    via_container = ak.explain(model, images, 0, method="captum.layer_lrp", layer="features")
    via_conv = ak.explain(model, images, 0, method="captum.layer_lrp", layer="features.3")
    torch.testing.assert_close(via_container.values, via_conv.values, rtol=0, atol=0)
    with pytest.raises(LayerError, match="leaf layer with an LRP rule"):
        ak.explain(model, images, 0, method="captum.layer_lrp", layer=model)  # not Sequential
    # ReLU directly after a conv in the Sequential maps back to the conv
    via_relu = ak.explain(model, images, 0, method="captum.layer_lrp", layer="features.4")
    torch.testing.assert_close(via_relu.values, via_conv.values, rtol=0, atol=0)


# ---- defaults ----------------------------------------------------------------------------

def test_grid_mask_is_contiguous_and_caps_at_the_image_size():
    mask = defaults.grid_mask(5, 12, 8, torch.device("cpu"))
    assert mask.shape == (1, 1, 5, 12)
    assert torch.equal(mask.unique(), torch.arange(5 * 8))
    assert defaults.grid_mask(224, 224, 8, torch.device("cpu")).unique().numel() == 64


def test_occlusion_window_scales_with_the_image():
    x = torch.zeros(1, 3, 224, 224)
    assert defaults.occlusion_window(x, None, None) == ((3, 28, 28), (3, 14, 14))
    assert defaults.occlusion_window(torch.zeros(1, 1, 8, 8), None, None) == ((1, 1, 1), (1, 1, 1))
    assert defaults.occlusion_window(x, 16, None) == ((3, 16, 16), (3, 8, 8))
    assert defaults.occlusion_window(x, (1, 5, 5), (1, 2, 2)) == ((1, 5, 5), (1, 2, 2))


def test_blur_keeps_constants_and_smooths():
    flat = torch.full((1, 2, 9, 9), 3.0)
    torch.testing.assert_close(defaults.gaussian_blur(flat), flat)
    spike = torch.zeros(1, 1, 33, 33)
    spike[0, 0, 16, 16] = 1
    blurred = defaults.gaussian_blur(spike)
    assert blurred.max() < 0.1 and abs(float(blurred.sum()) - 1) < 1e-5
    assert defaults.baseline_distribution(spike, None).shape == (2, 1, 33, 33)
    assert defaults.baseline_distribution(spike, ["zeros", 0.5, "mean"]).shape == (3, 1, 33, 33)


def test_layer_masks():
    cpu = torch.device("cpu")
    assert defaults.layer_mask((2, 4, 3, 3), None, "position", cpu).shape == (1, 1, 3, 3)
    assert defaults.layer_mask((2, 4, 3, 3), None, "channel", cpu).shape == (1, 4, 1, 1)
    assert defaults.layer_mask((2, 4, 3, 3), None, "neuron", cpu) is None


def test_no_new_warnings_from_adapter(model, images):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ak.explain(model, images, method="captum.guided_gradcam")
        ak.explain(model, images, method="captum.deeplift")


def test_unknown_method_still_unknown():
    with pytest.raises(UnknownMethodError):
        ak.get_method("captum.no_such_method")


def test_per_image_masks_and_baselines_follow_their_image(model, images, targets):
    masks = torch.stack([torch.arange(64).view(1, 8, 8) // k for k in (1, 4, 16)])
    base = torch.rand(3, 3, 8, 8)
    r = ak.explain(model, images, targets, method="captum.kernel_shap", feature_mask=masks,
                   baselines=base)
    for i in range(3):
        one = ak.explain(model, images[i:i + 1], targets[i:i + 1], method="captum.kernel_shap",
                         feature_mask=masks[i:i + 1], baselines=base[i:i + 1])
        torch.testing.assert_close(r.values[i:i + 1], one.values, rtol=0, atol=0)
