"""Built-in plugin: attribkit's own metrics and the Quantus-named suite (faithfulness,
robustness, localisation, complexity, randomisation, axiomatic), each batched and
implemented in the module of its group (``factory="module:function"``, imported on first use)."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MetricSpec

PETSIUK = "Petsiuk, Das & Saenko 2018, RISE, arXiv:1806.07421"
ROAD = "Rong et al. 2022, A Consistent and Efficient Evaluation Strategy for Attribution Methods (ROAD), ICML"
CLEVR = "Arras, Osman & Samek 2022, CLEVR-XAI, Information Fusion 81"
ADEBAYO = "Adebayo et al. 2018, Sanity Checks for Saliency Maps, NeurIPS"


@hookimpl
def register_metrics(register):
    for name, module, kind, higher, needs, options, reference, description in [
        ("deletion_auc", FAITH, "faithfulness", False, ("forward",), {"steps": 32, "baseline": None, "blur_sigma": 5.0},
         PETSIUK, "target probability as the most relevant pixels are blurred away (AUC)"),
        ("insertion_auc", FAITH, "faithfulness", True, ("forward",), {"steps": 32, "blur_sigma": 5.0}, PETSIUK,
         "target probability as the most relevant pixels are put back into a blurred image (AUC)"),
        ("road_morf", FAITH, "faithfulness", False, ("forward",), {"noise": 0.01, "seed": 0}, ROAD,
         "probability after removing the most relevant pixels, noisy linear imputation"),
        ("road_lerf", FAITH, "faithfulness", True, ("forward",), {"noise": 0.01, "seed": 0}, ROAD,
         "probability after removing the least relevant pixels, noisy linear imputation"),
        ("pointing_game", LOCAL, "localisation", True, ("ground_truth",), {},
         "Zhang et al. 2018, Top-down Neural Attention by Excitation Backprop, IJCV",
         "the most relevant pixel lies on the evidence"),
        ("relevance_mass_accuracy", LOCAL, "localisation", True, ("ground_truth",), {}, CLEVR,
         "share of positive relevance on the evidence"),
        ("relevance_rank_accuracy", LOCAL, "localisation", True, ("ground_truth",), {}, CLEVR,
         "share of the top-|evidence| pixels on the evidence"),
        ("cascading_randomization", RANDOM, "sanity", False, ("model", "method"), {"seed": 0}, ADEBAYO,
         "mean Spearman(|r|) with the original maps while layers are randomised top-down"),
        ("random_logit", RANDOM, "sanity", False, ("model", "method", "forward"), {"seed": 0}, ADEBAYO,
         "Spearman(|r|) between the maps of the explained class and of a random other class"),
    ]:
        register(MetricSpec(name=name, kind=kind, factory=f"{module}:{name}", higher_is_better=higher,
                            needs=needs, options=options, reference=reference, description=description,
                            forwards=FORWARDS[name]))
    for name, module, kind, higher, needs, options, reference, description in [*SUITE, *TOKENS]:
        register(MetricSpec(name=name, kind=kind, factory=f"{module}:{name}", higher_is_better=higher,
                            needs=needs, options=options, reference=reference, description=description,
                            forwards=FORWARDS[name]))


# ------------------------------------------------------------ token metrics (text)
TOKEN = "attribkit.evaluation.tokens"
ERASER = "DeYoung et al. 2020, ERASER: A Benchmark to Evaluate Rationalized NLP Models, ACL"
SAMEK = ("Samek et al. 2017, Evaluating the Visualization of What a Deep Neural Network Has Learned, "
         "IEEE TNNLS 28(11)")
_BINS = {"bins": (0.01, 0.05, 0.1, 0.2, 0.5), "removal": "delete", "score": "prob"}
#: the metrics of token attributions (``needs`` holds ``tokens``; ``ak.evaluate`` routes a
#: ``TokenAttribution`` to them)
TOKENS: list[tuple[str, str, str, bool, tuple[str, ...], dict, str, str]] = [
    ("token_pointing_game", TOKEN, "localisation", True, ("ground_truth", "tokens"), {},
     "Zhang et al. 2018, Top-down Neural Attention by Excitation Backprop, IJCV",
     "the text's top token is an evidence token"),
    ("token_rank_accuracy", TOKEN, "localisation", True, ("ground_truth", "tokens"), {}, CLEVR,
     "share of the top-|evidence| tokens that are evidence"),
    ("eraser_comprehensiveness", TOKEN, "faithfulness", True, ("forward", "tokens"), dict(_BINS), ERASER,
     "probability drop when the top 1/5/10/20/50% tokens are deleted (AOPC over the bins)"),
    ("eraser_sufficiency", TOKEN, "faithfulness", False, ("forward", "tokens"), dict(_BINS), ERASER,
     "probability drop when only the top 1/5/10/20/50% tokens are kept (AOPC over the bins)"),
    ("token_deletion_aopc", TOKEN, "faithfulness", True, ("forward", "tokens"), {"steps": None, "score": "prob"},
     SAMEK, "mean probability drop as the top tokens are replaced by the baseline token, one by one"),
    ("token_insertion_aopc", TOKEN, "faithfulness", True, ("forward", "tokens"),
     {"steps": None, "score": "prob"}, SAMEK,
     "mean probability rise as the top tokens are put back into an all-baseline text, one by one"),
]


# ------------------------------------------------------------ the Quantus-named suite
FAITH = "attribkit.evaluation.faithfulness"
CORR = "attribkit.evaluation.faithfulness_correlation"
LOCAL = "attribkit.evaluation.localisation"
COMPLEX = "attribkit.evaluation.complexity"
ROBUST = "attribkit.evaluation.robustness"
RANDOM = "attribkit.evaluation.randomisation"
AXIOM = "attribkit.evaluation.axiomatic"
NGUYEN = "Nguyen & Martínez 2020, On Quantitative Aspects of Model Interpretability, arXiv:2007.07584"
BHATT = "Bhatt, Weller & Moura 2020, Evaluating and Aggregating Feature-based Model Explanations, IJCAI"
MONTAVON = ("Montavon, Samek & Müller 2018, Methods for Interpreting and Understanding Deep Neural "
            "Networks, Digital Signal Processing 73")
YEH = "Yeh et al. 2019, On the (In)fidelity and Sensitivity of Explanations, NeurIPS"
AGARWAL = "Agarwal et al. 2022, Rethinking Stability for Attribution-based Explanations, arXiv:2203.06877"
HEDSTROM = ("Hedström et al. 2023, Sanity Checks Revisited: An Exploration to Repair the Model Parameter "
            "Randomisation Test, XAI in Action workshop, NeurIPS")
_PRE = {"abs": False, "normalise": True}
_ABS = {"abs": True, "normalise": True}

#: (name, module, kind, higher is better, needs, options (Quantus's names; attribkit's defaults), paper, what)
SUITE: list[tuple[str, str, str, bool, tuple[str, ...], dict, str, str]] = [
    ("faithfulness_correlation", CORR, "faithfulness", True, ("forward",),
     {"nr_runs": 100, "subset_size": None, "perturb_baseline": "black", **_PRE, "softmax": False, "seed": 0},
     BHATT, "Pearson correlation of a random subset's relevance with the output drop when it is removed"),
    ("faithfulness_estimate", CORR, "faithfulness", True, ("forward",),
     {"features_in_step": None, "perturb_baseline": "black", **_PRE, "softmax": False},
     "Alvarez-Melis & Jaakkola 2018, Towards Robust Interpretability with Self-Explaining Neural Networks, NeurIPS",
     "Pearson correlation of each pixel group's relevance with the output drop when it alone is removed"),
    ("monotonicity", FAITH, "faithfulness", True, ("forward",),
     {"features_in_step": None, "perturb_baseline": "black", **_ABS, "softmax": True, "quantus_compat": False},
     "Arya et al. 2019, One Explanation Does Not Fit All, arXiv:1909.03012",
     "the output never decreases as pixels are put back into the baseline image, least relevant first"),
    ("monotonicity_correlation", CORR, "faithfulness", True, ("forward",),
     {"features_in_step": None, "nr_samples": 5, "eps": 1e-5, "perturb_baseline": "uniform", **_ABS,
      "softmax": True, "seed": 0}, NGUYEN,
     "Spearman correlation of each pixel group's relevance with the output variance when it is perturbed"),
    ("pixel_flipping", FAITH, "faithfulness", False, ("forward",),
     {"features_in_step": None, "perturb_baseline": "black", **_PRE, "softmax": True, "quantus_compat": False},
     "Bach et al. 2015, On Pixel-Wise Explanations for Non-Linear Classifier Decisions by LRP, PLoS ONE 10(7)",
     "area under the target probability as the most relevant pixels are set to the baseline (unit steps)"),
    ("region_perturbation", FAITH, "faithfulness", True, ("forward",),
     {"patch_size": None, "order": "morf", "regions_evaluation": 100, "perturb_baseline": "black", **_PRE,
      "softmax": True, "seed": 0, "quantus_compat": False},
     "Samek et al. 2017, Evaluating the Visualization of What a Deep Neural Network Has Learned, IEEE TNNLS 28(11)",
     "AOPC: mean output drop as the most relevant patches are removed"),
    ("selectivity", FAITH, "faithfulness", False, ("forward",),
     {"patch_size": None, "perturb_baseline": "black", **_PRE, "softmax": True}, MONTAVON,
     "area under the output as the most relevant patches are removed (unit steps)"),
    ("sensitivity_n", CORR, "faithfulness", True, ("forward",),
     {"n_max_percentage": 0.8, "features_in_step": None, "n_values": 8, "nr_samples": 16,
      "perturb_baseline": "black", **_PRE, "softmax": True, "seed": 0, "quantus_compat": False},
     "Ancona et al. 2018, Towards Better Understanding of Gradient-based Attribution Methods, ICLR",
     "mean over subset sizes n of the correlation of a random n-subset's relevance with the output drop"),
    ("irof", FAITH, "faithfulness", True, ("forward",),
     {"segmentation_method": "slic", "patch_size": None, "perturb_baseline": "mean", **_PRE, "softmax": True,
      "quantus_compat": False},
     "Rieger & Hansen 2020, IROF: a Low Resource Evaluation Metric for Explanation Methods, arXiv:2003.08747",
     "area over the relative output as superpixels are removed, most relevant first"),
    ("road", FAITH, "faithfulness", False, ("forward",),
     {"percentages": tuple(range(5, 100, 10)), "noise": 0.01, "order": "morf", **_PRE, "seed": 0,
      "iterations": 60}, ROAD,
     "share of removal percentages (noisy linear imputation) at which the prediction is kept"),
    ("sufficiency", CORR, "faithfulness", True, ("forward",), {"threshold": 0.6, **_ABS},
     "Dasgupta, Frost & Moshkovitz 2022, Framework for Evaluating Faithfulness of Local Explanations, ICML",
     "share of the images with a similar explanation that get the same prediction"),
    ("infidelity", CORR, "faithfulness", False, ("forward",),
     {"perturb_patch_sizes": None, "n_perturb_samples": 10, "perturb_baseline": "black", "loss_func": "mse",
      "abs": False, "normalise": False, "softmax": False, "seed": 0, "quantus_compat": False}, YEH,
     "mean squared gap between the relevance of a removed square (times the change) and the output drop"),
    ("local_lipschitz_estimate", ROBUST, "robustness", False, ("model", "method", "forward"),
     {"nr_samples": 200, "perturb_mean": 0.0, "perturb_std": 0.1, **_PRE,
      "return_nan_when_prediction_changes": False, "seed": 0, "quantus_compat": False},
     "Alvarez-Melis & Jaakkola 2018, On the Robustness of Interpretability Methods, arXiv:1806.08049",
     "largest ||a - a'|| / ||x - x'|| under Gaussian input noise"),
    ("max_sensitivity", ROBUST, "robustness", False, ("model", "method", "forward"),
     {"nr_samples": 200, "lower_bound": 0.2, "upper_bound": None, "abs": False, "normalise": False,
      "return_nan_when_prediction_changes": False, "seed": 0}, YEH,
     "largest relative change of the map under uniform input noise"),
    ("avg_sensitivity", ROBUST, "robustness", False, ("model", "method", "forward"),
     {"nr_samples": 200, "lower_bound": 0.2, "upper_bound": None, "abs": False, "normalise": False,
      "return_nan_when_prediction_changes": False, "seed": 0}, YEH,
     "mean relative change of the map under uniform input noise"),
    ("continuity", ROBUST, "robustness", False, ("model", "method", "forward"),
     {"nr_steps": 28, "perturb_baseline": "black", **_ABS, "return_nan_when_prediction_changes": False,
      "quantus_compat": False}, MONTAVON,
     "largest ||a - a_t||_1 / ||x - x_t||_2 over horizontal translations"),
    ("relative_input_stability", ROBUST, "robustness", False, ("model", "method", "forward"),
     {"nr_samples": 200, "lower_bound": 0.02, "upper_bound": 0.2, "abs": False, "normalise": False,
      "eps_min": 1e-6, "return_nan_when_prediction_changes": True, "seed": 0, "quantus_compat": False}, AGARWAL,
     "largest relative map change over relative input change (prediction kept)"),
    ("relative_output_stability", ROBUST, "robustness", False, ("model", "method", "forward"),
     {"nr_samples": 200, "lower_bound": 0.02, "upper_bound": 0.2, "abs": False, "normalise": False,
      "eps_min": 1e-6, "return_nan_when_prediction_changes": True, "seed": 0, "quantus_compat": False}, AGARWAL,
     "largest relative map change over logit change (prediction kept)"),
    ("relative_representation_stability", ROBUST, "robustness", False, ("model", "method", "forward"),
     {"nr_samples": 200, "lower_bound": 0.02, "upper_bound": 0.2, "abs": False, "normalise": False,
      "eps_min": 1e-6, "layer_names": None, "layer": None, "return_nan_when_prediction_changes": True,
      "seed": 0, "quantus_compat": False}, AGARWAL,
     "largest relative map change over relative change of a layer's representation (prediction kept)"),
    ("consistency", ROBUST, "robustness", True, ("forward",),
     {"discretise_func": "top_n_sign", "n": 5, **_ABS, "quantus_compat": False},
     "Dasgupta, Frost & Moshkovitz 2022, Framework for Evaluating Faithfulness of Local Explanations, ICML",
     "share of the images with the same discretised explanation that get the same prediction"),
    ("attribution_localisation", LOCAL, "localisation", True, ("ground_truth",),
     {"weighted": False, "max_size": 1.0, "positive_attributions": False, **_ABS, "quantus_compat": False},
     "Kohlbrenner et al. 2020, Towards Best Practice in Explaining Neural Network Decisions with LRP, IJCNN",
     "share of the (absolute) relevance inside the mask"),
    ("top_k_intersection", LOCAL, "localisation", True, ("ground_truth",),
     {"k": None, "concept_influence": False, **_PRE},
     "Theiner, Müller-Budack & Ewerth 2021, Interpretable Semantic Photo Geolocation, WACV",
     "share of the k most relevant pixels inside the mask"),
    ("auc", LOCAL, "localisation", True, ("ground_truth",), {**_PRE},
     "Fawcett 2006, An Introduction to ROC Analysis, Pattern Recognition Letters 27",
     "ROC AUC of the relevance as a detector of the mask's pixels"),
    ("focus", LOCAL, "localisation", True, ("model", "method"), {"seed": 0, **_PRE},
     "Arias-Duart et al. 2022, Focus! Rating XAI Methods and Finding Biases, FUZZ-IEEE",
     "share of positive relevance on the explained class's quadrants of a 2x2 mosaic"),
    ("sparseness", COMPLEX, "complexity", True, (), {**_ABS},
     "Chalasani et al. 2020, Concise Explanations of Neural Networks using Adversarial Training, ICML",
     "Gini index of the absolute relevance"),
    ("complexity", COMPLEX, "complexity", False, (), {**_ABS}, BHATT,
     "entropy of the fractional absolute relevance"),
    ("effective_complexity", COMPLEX, "complexity", False, (), {"eps": 1e-5, **_ABS, "quantus_compat": False},
     NGUYEN, "number of pixels with relevance above eps"),
    ("mprt", RANDOM, "sanity", False, ("model", "method"),
     {"layer_order": "top_down", "seed": 42, **_ABS, "similarity_func": "spearman",
      "quantus_compat": False}, ADEBAYO,
     "mean Spearman similarity to the original maps while layers are re-initialised (Quantus's MPRT)"),
    ("emprt", RANDOM, "sanity", True, ("model", "method"),
     {"layer_order": "bottom_up", "seed": 42, "n_bins": 100, "skip_layers": True, "abs": False,
      "normalise": False, "quantus_compat": False}, HEDSTROM,
     "relative rise of the map's histogram entropy when the model is fully randomised (efficient MPRT)"),
    ("smprt", RANDOM, "sanity", False, ("model", "method"),
     {"layer_order": "bottom_up", "seed": 42, "nr_samples": 50, "noise_magnitude": 0.1,
      "return_last_correlation": False, **_ABS, "similarity_func": "spearman", "noise_seed": 0,
      "quantus_compat": False},
     HEDSTROM, "mean Spearman similarity of noise-averaged maps while layers are re-initialised (smooth MPRT)"),
    ("completeness", AXIOM, "axiomatic", False, ("forward",),
     {"perturb_baseline": "black", "abs": False, "normalise": False, "softmax": False, "quantus_compat": False},
     "Sundararajan, Taly & Yan 2017, Axiomatic Attribution for Deep Networks, ICML",
     "|sum of the relevance - (f(x) - f(baseline))|"),
    ("non_sensitivity", AXIOM, "axiomatic", False, ("forward",),
     {"eps": 1e-5, "features_in_step": None, "perturb_baseline": "black", **_ABS, "softmax": True,
      "quantus_compat": False}, NGUYEN,
     "number of pixel groups where zero relevance and no output effect disagree"),
    ("input_invariance", AXIOM, "axiomatic", True, ("model", "method"),
     {"input_shift": -1.0, "abs": False, "normalise": False, "quantus_compat": False},
     "Kindermans et al. 2019, The (Un)reliability of Saliency Methods, LNCS 11700",
     "the map is unchanged by a constant input shift absorbed by the first layer's bias"),
]


#: metrics whose score orders (or correlates) the pixels by their relevance: for a constant
#: map that order is arbitrary, so ``ak.evaluate`` makes the image's score NaN (MetricWarning)
RANKING = frozenset({
    "deletion_auc", "insertion_auc", "road_morf", "road_lerf", "road", "pointing_game",
    "relevance_rank_accuracy", "top_k_intersection", "cascading_randomization", "random_logit", "mprt",
    "faithfulness_correlation", "faithfulness_estimate", "monotonicity", "monotonicity_correlation",
    "pixel_flipping", "region_perturbation", "selectivity", "irof", "sensitivity_n", "consistency",
})

#: model forwards per image with the default options, the count first (``attribkit metrics``;
#: measured by ``benchmarks/metric_forwards.py``); "explanations": of perturbed copies or of
#: a modified copy of the model, each one method call
FORWARDS: dict[str, str] = {
    "deletion_auc": "33 (steps + 1)", "insertion_auc": "33 (steps + 1)",
    "road_morf": "9 (fractions)", "road_lerf": "9 (fractions)", "road": "10 (percentages)",
    "pointing_game": "0", "relevance_mass_accuracy": "0", "relevance_rank_accuracy": "0",
    "attribution_localisation": "0", "top_k_intersection": "0", "auc": "0",
    "sparseness": "0", "complexity": "0", "effective_complexity": "0",
    "cascading_randomization": "1 explanation per layer",
    "random_logit": "1 explanation + 1",
    "faithfulness_correlation": "101 (nr_runs + 1)",
    "faithfulness_estimate": "33 (32 groups + 1)",
    "monotonicity": "32 (steps)",
    "monotonicity_correlation": "161 (32 groups x nr_samples + 1)",
    "pixel_flipping": "32 (steps)",
    "region_perturbation": "65 (8x8 patches + 1)",
    "selectivity": "64 (8x8 patches)",
    "sensitivity_n": "129 (n_values x nr_samples + 1)",
    "irof": "superpixels + 1 (about 100)",
    "sufficiency": "1", "consistency": "1",
    "infidelity": "65 (8x8 patches + 1)",
    "local_lipschitz_estimate": "200 explanations (nr_samples)",
    "max_sensitivity": "200 explanations (nr_samples)",
    "avg_sensitivity": "200 explanations (nr_samples)",
    "continuity": "28 explanations (nr_steps)",
    "relative_input_stability": "200 explanations + 201",
    "relative_output_stability": "200 explanations + 201",
    "relative_representation_stability": "200 explanations + 201",
    "focus": "1 explanation (a 2x2 mosaic)",
    "mprt": "1 explanation per layer",
    "emprt": "1 explanation",
    "smprt": "50 explanations per layer + 50",
    "completeness": "2",
    "non_sensitivity": "33 (32 groups + 1)",
    "input_invariance": "1 explanation",
    "token_pointing_game": "0", "token_rank_accuracy": "0",
    "eraser_comprehensiveness": "6 (bins + 1)", "eraser_sufficiency": "6 (bins + 1)",
    "token_deletion_aopc": "T + 1 (tokens + 1)", "token_insertion_aopc": "T + 1 (tokens + 1)",
}
