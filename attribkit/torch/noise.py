"""The noise tunnel: SmoothGrad, SmoothGrad² and VarGrad around any method.

For each image ``x`` with value range ``r = max(x) - min(x)``, ``n`` noisy
copies ``x + N(0, (stdev * r)^2)`` are explained in chunks of rows (``batch_size``,
or sized from the input by :mod:`attribkit.torch.chunking`) and the maps
``M_1..M_n`` aggregated:

- ``smoothgrad``    ``mean_j M_j``          (Smilkov et al. 2017, arXiv:1706.03825)
- ``smoothgrad_sq`` ``mean_j M_j^2``        (Hooker et al. 2019, arXiv:1806.10758)
- ``vargrad``       ``mean_j M_j^2 - (mean_j M_j)^2``  (Adebayo et al. 2018, arXiv:1810.03307)

Every copy explains the clean image's target: with ``target=None`` the top
class of the clean image, found by one forward without gradients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch

from attribkit.errors import InvalidOptionError
from attribkit.progress import labelled, progress
from attribkit.result import Attribution
from attribkit.torch.checks import prepare_inputs
from attribkit.torch.chunking import measure, rows_per_chunk
from attribkit.torch.guard import model_guard
from attribkit.torch.runner import chunks
from attribkit.targets.base import Target
from attribkit.torch.targets import ChunkTarget, parse_target

KINDS = ("smoothgrad", "smoothgrad_sq", "vargrad")


@dataclasses.dataclass(frozen=True)
class NoiseTunnel:
    """How to smooth a method: ``kind`` (one of :data:`KINDS`), ``n_samples`` noisy
    copies per image, Gaussian ``stdev`` as a fraction of each image's value range,
    and an optional ``seed`` for reproducible noise."""

    kind: str = "smoothgrad"
    n_samples: int = 25
    stdev: float = 0.15
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidOptionError(f"noise tunnel kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if not isinstance(self.n_samples, int) or self.n_samples < 1:
            raise InvalidOptionError(f"n_samples must be a positive integer, got {self.n_samples!r}")
        if not self.stdev >= 0:
            raise InvalidOptionError(f"stdev must be >= 0, got {self.stdev!r}")

    @classmethod
    def of(cls, spec: "NoiseTunnel | str") -> "NoiseTunnel":
        """Accept a :class:`NoiseTunnel` or just its kind."""
        return spec if isinstance(spec, NoiseTunnel) else cls(kind=spec)


def noisy_copies(inputs: torch.Tensor, tunnel: NoiseTunnel) -> torch.Tensor:
    """``(B * n, ...)``: each image repeated ``n`` times (image-major) plus its noise."""
    flat = inputs.detach().flatten(1)
    sigma = tunnel.stdev * (flat.amax(1) - flat.amin(1))
    repeated = inputs.detach().repeat_interleave(tunnel.n_samples, dim=0)
    generator = None
    if tunnel.seed is not None:
        generator = torch.Generator(device=inputs.device).manual_seed(tunnel.seed)
    noise = torch.randn(repeated.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
    sigma = sigma.repeat_interleave(tunnel.n_samples).reshape(-1, *[1] * (inputs.ndim - 1))
    return repeated + noise * sigma


def aggregate(maps: torch.Tensor, batch: int, kind: str) -> torch.Tensor:
    """Reduce ``(B * n, ...)`` maps to ``(B, ...)`` by the tunnel's statistic."""
    maps = maps.reshape(batch, -1, *maps.shape[1:])
    if kind == "smoothgrad":
        return maps.mean(1)
    if kind == "smoothgrad_sq":
        return (maps**2).mean(1)
    return (maps**2).mean(1) - maps.mean(1) ** 2


def clean_targets(model: Callable, inputs: torch.Tensor, target: Any) -> Any:
    """The target every noisy copy explains: the clean top class for ``None``."""
    parsed = parse_target(target, len(inputs))
    if parsed is None:
        with model_guard(model, exclusive=False), torch.no_grad():
            return ChunkTarget(None).indices_for(model(inputs)).cpu()
    return parsed


def run_noise_tunnel(impl: Callable[..., Attribution], tunnel: NoiseTunnel, model: Any,
                     inputs: torch.Tensor, *, method: str, target: Any, layer: Any,
                     batch_size: int | None, options: dict[str, Any]) -> Attribution:
    """Explain ``n`` noisy copies of every image and aggregate.

    The ``B * n`` copies are explained in chunks of ``batch_size`` rows, or, without
    one, of as many rows as the memory budget holds
    (:func:`~attribkit.torch.chunking.rows_per_chunk`, from one forward of one
    image), under one progress bar; the maps equal those of a single call.
    """
    inputs = prepare_inputs(model, inputs, image=False)
    targets = clean_targets(model, inputs, target)
    copies = noisy_copies(inputs, tunnel)
    if isinstance(targets, torch.Tensor):
        expanded = targets.repeat_interleave(tunnel.n_samples)
    elif isinstance(targets, Target):  # each copy gets its image's target
        expanded = targets.take(torch.arange(len(inputs)).repeat_interleave(tunnel.n_samples))
    else:
        expanded = targets  # a callable acts row by row
    step = batch_size
    if batch_size is None:
        with model_guard(model, exclusive=False):
            step = rows_per_chunk(measure(model, inputs, grad=True), total=len(copies))
    parts = []
    with labelled(method), progress(len(copies), f"{tunnel.kind}: noisy copies", unit="row") as bar:
        for start, stop in chunks(len(copies), step):
            part_target = (expanded[start:stop] if isinstance(expanded, torch.Tensor)
                           else expanded.take(torch.arange(start, stop)) if isinstance(expanded, Target)
                           else expanded)
            parts.append(impl(model, copies[start:stop], method=method, target=part_target,
                              layer=layer, batch_size=batch_size, options=options))
            bar.update(stop - start)
    values = [p.values for p in parts]
    return dataclasses.replace(
        parts[0],
        values=aggregate(torch.cat(values) if len(values) > 1 else values[0], len(inputs),
                         tunnel.kind),
        target=targets if isinstance(targets, torch.Tensor) else None,
        meta={**parts[0].meta, "noise_tunnel": dataclasses.asdict(tunnel)},
    )


def smoothgrad(model: Any, inputs: torch.Tensor, *, method: str, target: Any = None,
               layer: Any = None, batch_size: int | None = None,
               options: dict[str, Any]) -> Attribution:
    """The registered ``smoothgrad`` method: saliency through the noise tunnel."""
    from attribkit.torch.gradients import saliency

    options = dict(options)
    tunnel = NoiseTunnel("smoothgrad", options.pop("n_samples"), options.pop("stdev"),
                         options.pop("seed"))
    return run_noise_tunnel(saliency, tunnel, model, inputs, method=method, target=target,
                            layer=layer, batch_size=batch_size, options=options)
