"""The one interface: :func:`explain`, plus the method and plugin listings."""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import numpy as np

from attribkit import reuse
from attribkit.errors import AttributionWarning, InvalidOptionError
from attribkit.host import PluginInfo, get_host
from attribkit.registry import MethodSpec, MetricSpec
from attribkit.result import Attribution


def methods(family: str | None = None) -> list[MethodSpec]:
    """Every registered method (sorted by name), optionally of one ``family``."""
    return [s for s in get_host().registry if family is None or s.family == family]


def get_method(name: str) -> MethodSpec:
    """The spec of a method by name or alias (``UnknownMethodError`` lists close matches)."""
    return get_host().registry.get(name)


def metrics(kind: str | None = None) -> list[MetricSpec]:
    """Every registered metric (sorted by name), optionally of one ``kind``."""
    return [s for s in get_host().metrics if kind is None or s.kind == kind]


def get_metric(name: str) -> MetricSpec:
    """The spec of a metric by name or alias."""
    return get_host().metrics.get(name)


def plugins() -> list[PluginInfo]:
    """Every plugin the host saw: loaded, failed (with the error) or disabled."""
    return list(get_host().plugins)


def _no_layer_reason(spec: MethodSpec) -> str:
    """Why a method takes no ``layer=``, in the words of its output."""
    if spec.output == "pixel":
        return "it attributes to the inputs"
    if "attention" in spec.needs:
        return ("it reads the attention of every block and returns a map over the patch tokens; "
                "prefix_tokens= and grid= describe them")
    return "it chooses where its map lies itself"


def explain(model: Any, inputs: Any, target: Any = None, *, method: str = "saliency",
            layer: Any = None, batch_size: int | None = None, noise_tunnel: Any = None,
            **options: Any) -> Attribution:
    """Explain ``model``'s predictions on a batch of ``inputs`` with ``method``.

    Args:
        model: a ``torch.nn.Module`` for gradient and CAM methods (any
            callable ``batch -> scores`` for forward-only methods). Its output may
            be a tensor, a dict, a list of per-image dicts (detectors), a tuple or a
            Hugging Face output; the target reads it.
        inputs: a batch, ``(B, C, H, W)`` for image methods, or a list of
            ``(C, H, W)`` images: stacked when they share a size, else explained one
            by one (then a list of results comes back, one per image).
        target: ``None`` (each image's top class), an int, one int per image
            (sequence or 1-D tensor), a callable ``raw_output -> (B,)``, or a target
            object of :mod:`attribkit.targets` (``Region``, ``Box``, ``Similarity``,
            ``Labels``, ``Class``). A target that explains several things per image
            (``Labels([3, 7])``, several boxes) gives one row per (image, thing),
            image-major, with ``result.meta["image_index"]`` the image of each row.
        method: a registered method name or alias (see :func:`methods`).
        layer: for layer methods, a module, a dotted name (``"layer4.1"``) or
            ``None`` to pick the last layer with a spatial output.
        batch_size: split the batch into chunks of this size to bound memory.
        noise_tunnel: ``None``, ``"smoothgrad"``, ``"smoothgrad_sq"``, ``"vargrad"``
            or an :class:`attribkit.torch.noise.NoiseTunnel` (with ``n_samples``,
            ``stdev``, ``seed``): average the method over noisy copies of each
            image, all in one batched call.
        **options: method options, validated against the method's spec.

    **Text** (``docs/text.md``): ``inputs`` a list of strings with ``tokenizer=``, a
    tokenizer's output (``input_ids`` and ``attention_mask``) or ``(B, T)`` token ids, on a
    Hugging Face classifier or causal LM (or any module mapping ids to scores): a
    :class:`~attribkit.text.result.TokenAttribution` (``values`` ``(B, T)``, ``tokens``,
    for a continuation ``matrix`` ``(B, T_out, T)``). Text options: ``tokenizer``,
    ``embedding`` (the token-embedding layer), ``max_new_tokens`` (the greedy continuation
    explained when ``target`` is ``None`` on a causal LM), ``skip_special_tokens``,
    ``score`` (``log_prob``, ``prob`` or ``logit`` of a continuation's tokens).

    **Other frameworks** (``docs/frameworks.md``): a JAX/Flax or Keras 3 model (with its
    plugin installed; ``backend="jax"`` names one for a plain function) takes inputs in its
    own layout; the gradient, CAM and forward-only methods run on it and the maps come back
    channel-first NumPy arrays.

    The model is left exactly as it was, also when something raises. A map that is
    zero everywhere is an :class:`~attribkit.errors.AttributionWarning` naming the images.
    """
    from attribkit.targets import rows
    from attribkit.text.detect import is_text_input

    if is_text_input(inputs, options):
        return _explain_text(model, inputs, target, method=method, layer=layer, batch_size=batch_size,
                             noise_tunnel=noise_tunnel, **options)

    from attribkit.backends.run import explain_framework, find_backend

    backend = find_backend(model, options)
    if backend is not None:
        result = explain_framework(backend, model, inputs, target, spec=get_method(method), layer=layer,
                                   batch_size=batch_size, noise_tunnel=noise_tunnel, options=options)
        warn_empty_maps(result)
        return result
    images = rows.image_list(inputs)
    if images is not None and not rows.same_size(images):
        return [explain(model, image[None], one, method=method, layer=layer, batch_size=batch_size,
                        noise_tunnel=noise_tunnel, **options)
                for image, one in zip(images, rows.per_image_targets(target, len(images)))]
    if images is not None:
        inputs = rows.stack(images)
    inputs, target, image_index = rows.expand(inputs, target)
    spec = get_method(method)
    if layer is not None and "layer" not in spec.needs:
        raise InvalidOptionError(
            f"method {spec.name!r} takes no layer ({_no_layer_reason(spec)}), but layer="
            f"{layer!r} was given; layer methods: "
            + ", ".join(s.name for s in methods() if "layer" in s.needs and "." not in s.name)
        )
    bound = spec.bind_options(options)
    impl = spec.load()
    start = time.perf_counter()
    if noise_tunnel is not None:
        from attribkit.torch.noise import NoiseTunnel, run_noise_tunnel

        result = run_noise_tunnel(impl, NoiseTunnel.of(noise_tunnel), model, inputs,
                                  method=spec.name, target=target, layer=layer,
                                  batch_size=batch_size, options=bound)
    else:
        result = impl(model, inputs, method=spec.name, target=target, layer=layer,
                      batch_size=batch_size, options=bound)
    if time.perf_counter() - start >= reuse.RECORD_AFTER_S:  # for ak.compare (attribkit.reuse)
        reuse.remember(reuse.fingerprint(model, inputs), spec.name, result, copy=True, target=target,
                       layer=layer, batch_size=batch_size, noise_tunnel=noise_tunnel, options=bound)
    if image_index is not None:
        result = dataclasses.replace(result, meta={**result.meta, "image_index": image_index})
    if rows.is_target(target):
        bound = target.bind(len(result.values))
        labels = bound.labels() if result.target is None else result.target
        result = dataclasses.replace(result, target=labels, meta={**result.meta, "target": bound})
    warn_empty_maps(result)
    return result


def _explain_text(model: Any, inputs: Any, target: Any, *, method: str, layer: Any,
                  batch_size: int | None, noise_tunnel: Any, **options: Any) -> Any:
    """:func:`explain` on text inputs (:func:`attribkit.text.runner.explain_text`)."""
    if layer is not None:
        raise InvalidOptionError(f"text methods attribute to the tokens and take no layer=, got {layer!r}")
    if noise_tunnel is not None:
        raise InvalidOptionError("noise_tunnel= is for images; on text, method=\"smoothgrad\" adds "
                                 "the noise to the token embeddings")
    from attribkit.text.runner import explain_text

    result = explain_text(model, inputs, target, spec=get_method(method), batch_size=batch_size, **options)
    warn_empty_maps(result)
    return result


def warn_empty_maps(result: Attribution) -> None:
    """:class:`~attribkit.errors.AttributionWarning` naming the rows whose map is zero
    everywhere (it says nothing: the target does not depend on the input or layer there)."""
    values = result.values
    flat = values.reshape(len(values), -1) if len(values) else values
    if not len(values) or flat.shape[1] == 0:
        return
    zero = (flat == 0).all(1)
    if not bool(zero.any()):
        return
    rows = np.flatnonzero(zero.cpu().numpy() if hasattr(zero, "cpu") else np.asarray(zero)).tolist()
    shown = ", ".join(map(str, rows[:8])) + (", ..." if len(rows) > 8 else "")
    warnings.warn(
        f"{result.method}: the map of row{'s' if len(rows) > 1 else ''} {shown} is zero everywhere: "
        "the target score does not depend on the input"
        + (f" or on layer {result.layer!r}" if result.layer else "")
        + " there (a detector without a detection matching the box, a target the model ignores, "
        "or a ReLU that clipped every position)", AttributionWarning, stacklevel=3)
