"""Randomisation (sanity) checks: do the maps change when the model or the class does?

Adebayo et al. 2018, "Sanity Checks for Saliency Maps" (NeurIPS): cascading
randomisation and the random-logit test as attribkit scores them, and Quantus's
MPRT with its efficient (eMPRT) and smooth (sMPRT) variants. Each re-explains on a copy of the model; the user's model and the global
RNG are left untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from attribkit.evaluation import functional as M
from attribkit.evaluation.base import MetricInput, MetricResult, require_explain
from attribkit.evaluation.rows import generator_for, pearson, preprocess, spearman
from attribkit.evaluation.scoring import class_indices, split, take
from attribkit.targets.classes import class_scores


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
    targets = class_indices(data.targets, "random_logit")
    with torch.no_grad():
        classes = class_scores(data.predict(data.inputs[:1])).shape[1]
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, classes, (len(targets),), generator=gen).to(targets.device)
    other = (targets + shift) % classes
    new = data.explain(data.model, data.inputs, other)
    return MetricResult(M.spearman(new.abs(), data.relevance.abs()))


# --------------------------------------------------------------------- Quantus's MPRT

def mprt(data: MetricInput, *, layer_order: str = "top_down", seed: int = 42, abs: bool = True,
         normalise: bool = True, similarity_func: str = "spearman", quantus_compat: bool = False) -> MetricResult:
    """Model parameter randomisation test, MPRT (Adebayo et al. 2018, "Sanity Checks
    for Saliency Maps", NeurIPS).

    On a copy of the model, every module with ``reset_parameters`` is re-initialised
    (``torch.manual_seed(seed + 1)`` before each, as Quantus), from the output end
    (``top_down``, cumulative: the cascading test), from the input end (``bottom_up``)
    or one at a time (``independent``); after each, the maps are recomputed and compared with the
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
    similar = {"spearman": spearman, "pearson": pearson}[similarity_func]
    model = copy.deepcopy(data.model).eval()
    a = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)

    def explained() -> torch.Tensor:
        return preprocess(_explain_all(data, model, data.inputs), abs=abs, normalise=normalise).flatten(1)

    per_layer = [similar(a, explained())] if quantus_compat else []
    names = ["original"] if quantus_compat else []
    for name in randomised_layers(model, layer_order, seed):
        per_layer.append(similar(a, explained()))
        names.append(name)
    sims = torch.stack(per_layer, 1)
    return MetricResult(sims.mean(1).float(), {"layers": names, "mean": sims.float().nanmean(0).tolist()})


# ------------------------------------------------------------- shared by the MPRT family

LAYER_ORDERS = ("top_down", "bottom_up", "independent")


def randomised_layers(model: nn.Module, layer_order: str, seed: int) -> Iterator[str]:
    """Re-initialise, in place on ``model`` (a copy), every module with ``reset_parameters``
    one after the other, yielding each one's name once it is reset; ``torch.manual_seed(seed
    + 1)`` before each reset (as Quantus). ``top_down``: from the output end, cumulative;
    ``bottom_up``: from the input end, cumulative; ``independent``: one at a time, the
    others restored. The global RNG is restored afterwards."""
    if layer_order not in LAYER_ORDERS:
        raise ValueError(f"layer_order must be one of {', '.join(LAYER_ORDERS)}, got {layer_order!r}")
    original = copy.deepcopy(model.state_dict())
    layers = [(name, m) for name, m in model.named_modules() if hasattr(m, "reset_parameters")]
    if layer_order == "top_down":
        layers = layers[::-1]
    with torch.random.fork_rng(devices=[]):
        for name, layer in layers:
            if layer_order == "independent":
                model.load_state_dict(original)
            torch.manual_seed(seed + 1)
            with torch.no_grad():
                layer.reset_parameters()
            yield name


def _explain_all(data: MetricInput, model: nn.Module, inputs: torch.Tensor,
                 targets: Any = None) -> torch.Tensor:
    """The maps of ``model`` for ``inputs`` (default targets: ``data.targets``), ``batch_size`` rows per call."""
    targets = data.targets if targets is None else targets
    return torch.cat([data.explain(model, xs, ts).detach().double() for xs, ts in
                      zip(inputs.split(data.batch_size), split(targets, len(inputs), data.batch_size))])


# ------------------------------------------------------------------------------ eMPRT

def histogram_entropy(a: torch.Tensor, n_bins: int = 100) -> torch.Tensor:
    """Shannon entropy (nats) of the ``n_bins``-bin histogram of each row of ``a``
    (``(B, D)``), bins spanning the row's range as ``np.histogram(row, bins=n_bins)``
    (a constant row: ``[v - 0.5, v + 0.5]``), then ``scipy.stats.entropy(counts)``."""
    a = a.double()
    lo, hi = a.amin(1), a.amax(1)
    flat = lo == hi
    lo, hi = torch.where(flat, lo - 0.5, lo), torch.where(flat, hi + 0.5, hi)
    steps = torch.arange(n_bins + 1, dtype=torch.float64, device=a.device)
    edges = lo[:, None] + steps[None, :] * ((hi - lo) / n_bins)[:, None]  # np.linspace's rule
    edges[:, -1] = hi
    idx = ((a - lo[:, None]) / (hi - lo)[:, None] * n_bins).long().clamp(0, n_bins - 1)
    idx = idx - (a < edges.gather(1, idx)).long()  # numpy's corrections at the bin edges
    idx = idx + ((a >= edges.gather(1, idx + 1)) & (idx != n_bins - 1)).long()
    counts = torch.zeros(len(a), n_bins, dtype=torch.float64, device=a.device).scatter_add_(
        1, idx, torch.ones_like(a))
    p = counts / counts.sum(1, keepdim=True)
    return -(p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(1)


def emprt(data: MetricInput, *, layer_order: str = "bottom_up", seed: int = 42, n_bins: int = 100,
          skip_layers: bool = True, abs: bool = False, normalise: bool = False,
          quantus_compat: bool = False) -> MetricResult:
    """Efficient MPRT, eMPRT (Hedström et al. 2023, "Sanity Checks Revisited: An
    Exploration to Repair the Model Parameter Randomisation Test", XAI in Action
    workshop, NeurIPS): the relative rise in explanation complexity when the model is
    fully randomised, ``(H(a_rand) - H(a)) / H(a)``, ``H`` the entropy of the map's
    ``n_bins``-bin histogram (:func:`histogram_entropy`; Quantus's ``discrete_entropy``),
    ``a_rand`` the map after every module with ``reset_parameters`` is re-initialised
    in ``layer_order`` (seeded as :func:`mprt`). Higher is better (a method that ignores
    the weights scores about 0). ``skip_layers=False`` also records the entropy after
    each layer (curves; the score is unchanged).

    ``a`` is the map being scored; Quantus 0.6 recomputes it with the intact model
    (``quantus_compat=True``; the same when the maps came from the method).
    Quantus's ``n_bins`` rules (``complexity_func_kwargs["rule"]``) are not offered:
    pass ``n_bins``. The user's model and the global RNG are left untouched.
    """
    require_explain(data)
    model = copy.deepcopy(data.model).eval()
    base = _explain_all(data, model, data.inputs) if quantus_compat else data.relevance
    h0 = histogram_entropy(preprocess(base, abs=abs, normalise=normalise).flatten(1), n_bins)
    names, entropies = [], []
    n_layers = sum(1 for m in model.modules() if hasattr(m, "reset_parameters"))
    for k, name in enumerate(randomised_layers(model, layer_order, seed)):
        if skip_layers and k + 1 < n_layers:
            continue
        rel = preprocess(_explain_all(data, model, data.inputs), abs=abs, normalise=normalise)
        entropies.append(histogram_entropy(rel.flatten(1), n_bins))
        names.append(name)
    h = torch.stack(entropies, 1)
    score = (h[:, -1] - h0) / h0
    return MetricResult(score.float(), {"layers": ["original", *names],
                                        "entropy": [float(h0.mean()), *h.mean(0).tolist()]})


# ------------------------------------------------------------------------------ sMPRT

def _smooth_maps(data: MetricInput, model: nn.Module, nr_samples: int, noise_magnitude: float,
                 gen: torch.Generator) -> torch.Tensor:
    """``(B, H, W)`` mean map over ``nr_samples`` noisy copies ``x + N(0, std^2)``,
    ``std = noise_magnitude * (max x - min x)`` per image, the last copy noise-free;
    the ``B * nr_samples`` copies are explained ``batch_size`` at a time."""
    x = data.inputs
    b = len(x)
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).double()
    eps = torch.randn((b, nr_samples, *x.shape[1:]), generator=gen, dtype=torch.float64)
    eps = eps.to(x.device) * (noise_magnitude * span).view(b, 1, 1, 1, 1)
    eps[:, -1] = 0
    noisy = (x[:, None].double() + eps).to(x.dtype).flatten(0, 1)
    rel = _explain_all(data, model, noisy, take(data.targets, torch.arange(b).repeat_interleave(nr_samples)))
    return rel.view(b, nr_samples, *rel.shape[1:]).mean(1)


def smprt(data: MetricInput, *, layer_order: str = "bottom_up", seed: int = 42, nr_samples: int = 50,
          noise_magnitude: float = 0.1, return_last_correlation: bool = False, abs: bool = True,
          normalise: bool = True, similarity_func: str = "spearman", noise_seed: int = 0,
          quantus_compat: bool = False) -> MetricResult:
    """Smooth MPRT, sMPRT (Hedström et al. 2023, "Sanity Checks Revisited: An Exploration
    to Repair the Model Parameter Randomisation Test", XAI in Action workshop, NeurIPS):
    :func:`mprt` with every map denoised by averaging it over ``nr_samples`` inputs
    ``x + N(0, std^2)``, ``std = noise_magnitude * (max x - min x)`` (the last one
    noise-free), as Quantus. Layers are re-initialised in ``layer_order`` (default
    ``bottom_up``, seeded as :func:`mprt`); after each the smoothed maps are compared
    with the smoothed maps of the intact model (``similarity_func``: Spearman or
    Pearson of the preprocessed maps). The score is the mean similarity over the
    layers (``return_last_correlation``: the last layer's). Lower is better.

    Quantus 0.6 compares with the maps passed in (unsmoothed) and its average also
    counts the similarity of those with the intact model's smoothed maps (its
    ``"original"`` entry): ``quantus_compat=True`` does both. Noise draws use their own
    generator (``noise_seed``), not NumPy's global one; ``seed`` seeds the re-initialisations. The user's model and the global RNG
    are left untouched.
    """
    require_explain(data)
    similar = {"spearman": spearman, "pearson": pearson}[similarity_func]
    model = copy.deepcopy(data.model).eval()
    gen = generator_for(noise_seed)

    def smoothed() -> torch.Tensor:
        return preprocess(_smooth_maps(data, model, nr_samples, noise_magnitude, gen),
                          abs=abs, normalise=normalise).flatten(1)

    intact = smoothed()
    if quantus_compat:
        ref = preprocess(data.relevance, abs=abs, normalise=normalise).flatten(1)
        per_layer, names = [similar(ref, intact)], ["original"]
    else:
        ref, per_layer, names = intact, [], []
    for name in randomised_layers(model, layer_order, seed):
        per_layer.append(similar(ref, smoothed()))
        names.append(name)
    sims = torch.stack(per_layer, 1)
    score = sims[:, -1] if return_last_correlation else sims.mean(1)
    return MetricResult(score.float(), {"layers": names, "mean": sims.float().nanmean(0).tolist()})
