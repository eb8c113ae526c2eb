"""Options Captum would reject are refused by the adapter before Captum runs
(InvalidOptionError naming the method, the option and what is accepted), and an
AssertionError from inside Captum never reaches the user bare."""

import captum.attr as A
import pytest
import torch
from torch import nn

import attribkit as ak
from attribkit.errors import InputError, InvalidOptionError
from attribkit.testing import assert_model_untouched
from attribkit_captum import guards, rules
from attribkit_captum.table import SUPPORTED

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:captum")

LONG = torch.long

# (method, options, the option the message must name); the suite's 3 images of 3 x 8 x 8,
# layer methods at the auto-picked layer "features" (8 channels, 8 x 8)
REJECTED = [
    ("captum.integrated_gradients", {"n_steps": 0}, "n_steps"),
    ("captum.integrated_gradients", {"n_steps": 1, "integration_method": "riemann_left"},
     "n_steps"),
    ("captum.layer_integrated_gradients", {"n_steps": -1}, "n_steps"),
    ("captum.internal_influence", {"n_steps": 0}, "n_steps"),
    ("captum.layer_conductance", {"n_steps": 0}, "n_steps"),
    ("captum.integrated_gradients", {"integration_method": "simpson"}, "integration_method"),
    ("captum.layer_conductance", {"integration_method": "left"}, "integration_method"),
    ("captum.integrated_gradients", {"internal_batch_size": 0}, "internal_batch_size"),
    ("captum.internal_influence", {"internal_batch_size": 2.0}, "internal_batch_size"),
    ("captum.gradient_shap", {"n_samples": 0}, "n_samples"),
    ("captum.layer_gradient_shap", {"n_samples": -1}, "n_samples"),
    ("captum.shapley_value_sampling", {"n_samples": 0}, "n_samples"),
    ("captum.kernel_shap", {"n_samples": 0}, "n_samples"),
    ("captum.lime", {"n_samples": -2}, "n_samples"),
    ("captum.gradient_shap", {"stdevs": -0.1}, "stdevs"),
    ("captum.layer_gradient_shap", {"stdevs": -1.0}, "stdevs"),
    ("captum.feature_ablation", {"perturbations_per_eval": 0}, "perturbations_per_eval"),
    ("captum.occlusion", {"perturbations_per_eval": -1}, "perturbations_per_eval"),
    ("captum.shapley_values", {"perturbations_per_eval": 0}, "perturbations_per_eval"),
    ("captum.layer_feature_ablation", {"perturbations_per_eval": 0}, "perturbations_per_eval"),
    ("captum.deeplift", {"eps": 0.0}, "eps"),
    ("captum.guided_gradcam", {"interpolate_mode": "cubic"}, "interpolate_mode"),
    ("captum.lime", {"interpretable_model": 3}, "interpretable_model"),
    ("captum.lime", {"similarity_func": "cosine"}, "similarity_func"),
    ("captum.lime", {"perturb_func": 1}, "perturb_func"),
    ("captum.integrated_gradients", {"baselines": "purple"}, "baselines"),
    ("captum.integrated_gradients", {"baselines": torch.zeros(2, 3, 8, 8)}, "baselines"),
    ("captum.deeplift", {"baselines": torch.zeros(1, 3, 4, 4)}, "baselines"),
    ("captum.occlusion", {"baselines": torch.zeros(3, 8, 8)}, "baselines"),
    ("captum.deeplift_shap", {"baselines": "zeros"}, "baselines"),
    ("captum.deeplift_shap", {"baselines": torch.zeros(1, 3, 8, 8)}, "baselines"),
    ("captum.layer_deeplift_shap", {"baselines": [0.0]}, "baselines"),
    ("captum.gradient_shap", {"baselines": torch.zeros(4, 3, 4, 4)}, "baselines"),
    ("captum.gradient_shap", {"baselines": []}, "baselines"),
    ("captum.feature_ablation", {"feature_mask": torch.zeros(1, 1, 8, 8)}, "feature_mask"),
    ("captum.feature_ablation", {"feature_mask": -torch.ones(1, 1, 8, 8, dtype=LONG)},
     "feature_mask"),
    ("captum.lime", {"feature_mask": torch.zeros(1, 1, 4, 4, dtype=LONG)}, "feature_mask"),
    ("captum.shapley_values", {"feature_mask": torch.zeros(2, 1, 8, 8, dtype=LONG)},
     "feature_mask"),
    ("captum.kernel_shap", {"feature_mask": torch.zeros(1, 1, 8, 8, dtype=LONG)}, "feature_mask"),
    ("captum.kernel_shap", {"grid": 1}, "grid"),
    ("captum.feature_ablation", {"grid": 0}, "grid"),
    ("captum.occlusion", {"sliding_window_shapes": (1, 2, 2, 2)}, "sliding_window_shapes"),
    ("captum.occlusion", {"sliding_window_shapes": 0}, "sliding_window_shapes"),
    ("captum.occlusion", {"sliding_window_shapes": (20, 20)}, "sliding_window_shapes"),
    ("captum.occlusion", {"strides": 0}, "strides"),
    ("captum.occlusion", {"sliding_window_shapes": 2, "strides": 4}, "strides"),
    ("captum.layer_feature_ablation", {"layer_mask": torch.zeros(1, 1, 3, 3, dtype=LONG)},
     "layer_mask"),
    ("captum.layer_feature_permutation", {"layer_mask": torch.zeros(1, 1, 8, 8)}, "layer_mask"),
    ("captum.layer_feature_ablation", {"layer_baselines": torch.zeros(2, 8, 8, 8)},
     "layer_baselines"),
    ("captum.layer_feature_permutation", {"group": "pixels"}, "group"),
]


def shown(value):
    """Tensors by shape, in lists too (readable test ids)."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    return [shown(v) for v in value] if isinstance(value, list) else value


def case_id(case):
    method, options, _ = case
    return f"{method.removeprefix('captum.')}-{ {k: shown(v) for k, v in options.items()} }"


@pytest.mark.parametrize("method, options, option", REJECTED, ids=map(case_id, REJECTED))
def test_rejected_before_captum_naming_method_and_option(method, options, option, model, images):
    with assert_model_untouched(model), pytest.raises(InvalidOptionError) as raised:
        ak.explain(model, images, [0, 1, 2], method=method, **options)
    message = str(raised.value)
    assert message.startswith(f"{method}: option {option!r} must be "), message
    assert "got " in message
    assert raised.value.__cause__ is None   # found by the adapter, not caught from Captum


ACCEPTED = [
    ("captum.integrated_gradients", {"n_steps": 1}),
    ("captum.integrated_gradients", {"n_steps": 2, "integration_method": "riemann_middle"}),
    ("captum.layer_conductance", {"n_steps": 1, "integration_method": "riemann_trapezoid"}),
    ("captum.gradient_shap", {"n_samples": 1, "stdevs": 0.0, "seed": None}),
    ("captum.gradient_shap", {"baselines": [torch.zeros(2, 3, 8, 8), "mean"]}),
    ("captum.deeplift_shap", {"baselines": ["zeros", 0.5]}),
    ("captum.deeplift", {"baselines": torch.zeros(3, 3, 8, 8)}),
    ("captum.feature_ablation", {"feature_mask": torch.arange(64).view(8, 8) // 16,
                                 "perturbations_per_eval": 1}),
    ("captum.kernel_shap", {"grid": 2, "n_samples": 4}),
    ("captum.occlusion", {"sliding_window_shapes": 8, "strides": 9}),  # the window covers all
    ("captum.layer_feature_ablation", {"layer_baselines": torch.zeros(1, 8, 8, 8),
                                       "layer_mask": torch.zeros(8, 1, 1, dtype=LONG)}),
]


@pytest.mark.parametrize("method, options", ACCEPTED, ids=[case_id((*c, None)) for c in ACCEPTED])
def test_edge_values_captum_accepts_pass(method, options, model, images):
    result = ak.explain(model, images, [0, 1, 2], method=method, **options)
    assert len(result.values) == len(images) and torch.isfinite(result.values).all()


def test_static_options_are_rejected_before_any_forward(model, images):
    forwards = []
    model.register_forward_pre_hook(lambda m, args: forwards.append(len(args[0])))
    for method, options in [("captum.deeplift", {"eps": -1.0}),
                            ("captum.layer_deeplift_shap", {"baselines": []}),
                            ("captum.lime", {"n_samples": 0})]:
        with pytest.raises(InvalidOptionError):
            ak.explain(model, images, 0, method=method, **options)
    assert forwards == []


def test_the_rules_name_real_options_and_classes():
    options = {name for e in SUPPORTED for name in e.options}
    classes = {e.cls for e in SUPPORTED}
    for rule in rules.RULES:
        assert rule.option in options, rule
        assert rule.stage in rules.STAGES, rule
        assert rule.classes is None or rule.classes <= classes, rule
    assert rules.DISTRIBUTION <= classes and rules.TWO_BASELINES <= rules.DISTRIBUTION


def test_integration_methods_are_captums():
    from captum.attr._utils.approximation_methods import SUPPORTED_METHODS

    assert set(rules.INTEGRATION_METHODS) == set(SUPPORTED_METHODS)


# ---- AssertionErrors from inside Captum ---------------------------------------------------

class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        return y, -y


class SplitNet(nn.Module):
    """Its layer ``split`` returns two tensors, which Captum's GuidedGradCam asserts against."""

    def __init__(self):
        super().__init__()
        self.split = TwoOutputs()
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        a, b = self.split(x)
        return self.fc(self.relu(a + b).mean((2, 3)))


def test_a_captum_assertion_becomes_an_attribkit_error_with_captums_message(images):
    torch.manual_seed(0)
    model = SplitNet()
    with assert_model_untouched(model), pytest.raises(InputError) as raised:
        ak.explain(model, images, 0, method="captum.guided_gradcam", layer="split")
    assert str(raised.value).startswith("captum.guided_gradcam: Captum rejected the call: ")
    assert "multiple inputs / outputs is not supported" in str(raised.value)
    assert isinstance(raised.value.__cause__, AssertionError)
    assert not isinstance(raised.value, AssertionError)


class Picky(nn.Module):
    """A model with its own assertion, which fails only on Captum's expanded batches."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 2)

    def forward(self, x):
        assert len(x) <= 3, "this model takes at most 3 images"
        return self.fc(x.flatten(1))


def test_the_models_own_assertion_is_not_rewritten(images):
    with pytest.raises(AssertionError, match="at most 3 images"):
        ak.explain(Picky(), images, 0, method="captum.integrated_gradients")


def test_a_captum_message_naming_an_option_gives_invalid_option_error():
    error = guards.captum_error("captum.lime", ["perturbations_per_eval", "n_samples"],
                                AssertionError("Cannot have perturbations_per_eval > 1 when "
                                               "function returns scalar."))
    assert isinstance(error, InvalidOptionError)
    assert str(error) == ("captum.lime: Captum rejected option 'perturbations_per_eval': Cannot "
                          "have perturbations_per_eval > 1 when function returns scalar.")
    assert isinstance(guards.captum_error("captum.lime", ["n_samples"], AssertionError()),
                      InputError)


def test_direct_captum_still_asserts(model, images):
    """The reason for all of the above: Captum's own call fails with a bare AssertionError."""
    with pytest.raises(AssertionError, match="larger than zero"):
        A.IntegratedGradients(model).attribute(images, target=0, n_steps=0)
