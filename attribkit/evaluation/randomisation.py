"""Randomisation (sanity) checks: do the maps change when the model or the class does?

Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (NeurIPS): cascading
randomisation and the random-logit test as attribkit scores them, and Quantus's
MPRT. Each re-explains on a copy of the model; the user's model and the global
RNG are left untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from attribkit.evaluation import functional as M
from attribkit.evaluation.base import MetricInput, MetricResult, require_explain
from attribkit.evaluation.rows import pearson, preprocess, spearman


NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def randomizable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules with their own parameters and a ``reset_parameters`` (normalisation
    layers excluded), from the output end back to the input (module order reversed)."""
    layers = [(name, m) for name, m in model.named_modules()
              if name and not list(m.children()) and any(True for _ in m.parameters(recurse=False))
              and hasattr(m, "reset_parameters") and not isinstance(m, NORM_LAYERS)]
    return layers[::-1]


def _similarities(new: torch.Tensor, base: torch.Tensor) -> dict[str, torch.Tensor]:
    return {
        "spearman_abs": M.spearman(new.abs(), base.abs()),
        "spearman": M.spearman(new, base),
        "ssim": M.ssim(M.normalize_maps(new), M.normalize_maps(base)),
    }


def cascading_randomization(data: MetricInput, *, seed: int = 0) -> MetricResult:
    """Cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks
    for Saliency Maps"): on a copy of the model, re-initialise layers one by one from
    the output down to the input, re-explain after each, and compare with the
    original maps by Spearman rank correlation of ``|r|`` and of ``r`` and by SSIM
    of the min-max scaled ``|r|``. The score per image is the mean Spearman(|r|)
    over all randomisation steps: **lower is better** (a method that ignores the
    weights stays similar). Curves: the three similarities per randomised layer.
    The user's model and the global RNG are left untouched.
    """
    model = copy.deepcopy(data.model).eval()
    layers = randomizable_layers(model)
    steps: dict[str, list[float]] = {"spearman_abs": [], "spearman": [], "ssim": []}
    per_image = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _name, layer in layers:
            with torch.no_grad():
                layer.reset_parameters()
            sims = _similarities(data.explain(model, data.inputs, data.targets), data.relevance)
            for key, value in sims.items():
                steps[key].append(float(value.mean()))
            per_image.append(sims["spearman_abs"])
    curves = {"layers": [name for name, _ in layers], **steps}
    return MetricResult(torch.stack(per_image).mean(0), curves)


def random_logit(data: MetricInput, *, seed: int = 0) -> MetricResult:
    """Data/label sanity (Adebayo et al. 2018; Sixt et al. 2020): explain a random
    other class and compare with the map of the explained class by Spearman(|r|).
    Lower is better (a class-insensitive method scores 1)."""
    with torch.no_grad():
        classes = data.predict(data.inputs[:1]).shape[1]
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, classes, (len(data.targets),), generator=gen).to(data.targets.device)
    other = (data.targets + shift) % classes
    new = data.explain(data.model, data.inputs, other)
    return MetricResult(M.spearman(new.abs(), data.relevance.abs()))


# --------------------------------------------------------------------- Quantus's MPRT

def mprt(data: MetricInput, *, layer_order: str = "top_down", seed: int = 42, abs: bool = True,
         normalise: bool = True, similarity_func: str = "spearman", quantus_compat: bool = False) -> MetricResult:
    """Model parameter randomisation test, MPRT (Adebayo et al. 2018, "Sanity Checks
    for Saliency Maps", NeurIPS).

    On a copy of the model, every module with ``reset_parameters`` is re-initialised
    (``torch.manual_seed(seed + 1)`` before each, as Quantus), from the output end
    (``top_down``, cumulative: the cascading test) or one at a time
    (``independent``); after each, the maps are recomputed and compared with the
    original ones (``similarity_func``: ``spearman`` or ``pearson`` of the
    preprocessed maps). The score is the mean similarity over the layers
    (Quantus's ``return_average_correlation=True``). Lower is better. Curves: the
    mean similarity per layer. The user's model and the global RNG are untouched.

    Quantus 0.6's average also counts the similarity with the maps of the *intact*
    model (its "original" entry, about 1; the code skips a key ``"orig"`` that
    does not exist), which pulls every score towards 1 by ``1 / (L + 1)``;
    ``quantus_compat=True`` includes it.
    """
    require_explain(data)
    if layer_order not in ("top_down", "independent"):
        raise ValueError(f"layer_order must be 'top_down' or 'independent', got {layer_order!r}")
    similar = {"spearman": spearman, "pearson": pearson}[similarity_func]
    model = copy.deepcopy(data.model).eval()
    original = copy.deepcopy(model.state_dict())
    layers = [(name, m) for name, m in model.named_modules() if hasattr(m, "reset_parameters")]
    if layer_order == "top_down":
        layers = layers[::-1]
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)

    def explained() -> torch.Tensor:
        rel = torch.cat([data.explain(model, xs, ts).detach() for xs, ts in
                         zip(data.inputs.split(data.batch_size), data.targets.split(data.batch_size))])
        return preprocess(rel, abs=abs, normalise=normalise).flatten(1)

    per_layer = [similar(a, explained())] if quantus_compat else []
    with torch.random.fork_rng(devices=[]):
        for _name, layer in layers:
            if layer_order == "independent":
                model.load_state_dict(original)
            torch.manual_seed(seed + 1)
            with torch.no_grad():
                layer.reset_parameters()
            per_layer.append(similar(a, explained()))
    sims = torch.stack(per_layer, 1)
    names = (["original"] if quantus_compat else []) + [n for n, _ in layers]
    return MetricResult(sims.mean(1).float(), {"layers": names, "mean": sims.float().nanmean(0).tolist()})
