"""Built-in plugin: the faithfulness, localisation and sanity metrics."""

from __future__ import annotations

from attribkit.hookspecs import hookimpl
from attribkit.registry import MetricSpec

IMPL = "attribkit.bench.evaluate"
PETSIUK = "Petsiuk, Das & Saenko 2018, RISE, arXiv:1806.07421"
ROAD = "Rong et al. 2022, A Consistent and Efficient Evaluation Strategy for Attribution Methods (ROAD), ICML"
CLEVR = "Arras, Osman & Samek 2022, CLEVR-XAI, Information Fusion 81"
ADEBAYO = "Adebayo et al. 2018, Sanity Checks for Saliency Maps, NeurIPS"


@hookimpl
def register_metrics(register):
    for name, kind, higher, needs, options, reference, description in [
        ("deletion_auc", "faithfulness", False, ("forward",), {"steps": 32, "baseline": None, "blur_sigma": 5.0},
         PETSIUK, "target probability as the most relevant pixels are blurred away (AUC)"),
        ("insertion_auc", "faithfulness", True, ("forward",), {"steps": 32, "blur_sigma": 5.0}, PETSIUK,
         "target probability as the most relevant pixels are put back into a blurred image (AUC)"),
        ("road_morf", "faithfulness", False, ("forward",), {"noise": 0.01, "seed": 0}, ROAD,
         "probability after removing the most relevant pixels, noisy linear imputation"),
        ("road_lerf", "faithfulness", True, ("forward",), {"noise": 0.01, "seed": 0}, ROAD,
         "probability after removing the least relevant pixels, noisy linear imputation"),
        ("pointing_game", "localisation", True, ("ground_truth",), {},
         "Zhang et al. 2018, Top-down Neural Attention by Excitation Backprop, IJCV",
         "the most relevant pixel lies on the evidence"),
        ("relevance_mass_accuracy", "localisation", True, ("ground_truth",), {}, CLEVR,
         "share of positive relevance on the evidence"),
        ("relevance_rank_accuracy", "localisation", True, ("ground_truth",), {}, CLEVR,
         "share of the top-|evidence| pixels on the evidence"),
        ("cascading_randomization", "sanity", False, ("model", "method"), {"seed": 0}, ADEBAYO,
         "mean Spearman(|r|) with the original maps while layers are randomised top-down"),
        ("random_logit", "sanity", False, ("model", "method", "forward"), {"seed": 0}, ADEBAYO,
         "Spearman(|r|) between the maps of the explained class and of a random other class"),
    ]:
        register(MetricSpec(name=name, kind=kind, factory=f"{IMPL}:{name}", higher_is_better=higher,
                            needs=needs, options=options, reference=reference, description=description))
