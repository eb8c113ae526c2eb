"""The adapter: one attribkit implementation per Captum class (imports torch and Captum).

:func:`build` turns a table entry into a method implementation. Per chunk of
the batch (``batch_size=``) it

1. checks the options against :mod:`attribkit_captum.rules` (what Captum would
   reject), before any work and again once the chunk and the layer are known;
2. runs one forward without gradients to resolve the target (``None``: the top
   class; ints are range-checked, raising ``TargetError``), and to measure the
   layer for the default layer masks;
3. hands Captum the model and the per-image class indices or, for a callable target
   or a target object (``Region``, ``Box``, ``Similarity``, ``Labels``), the model
   followed by the target's selection (:class:`~attribkit_captum.heads.TargetHead`,
   one scalar per row, ``target=None``), and the resolved layer;
4. fills in the defaults of :mod:`attribkit_captum.defaults` and, when
   ``internal_batch_size`` / ``perturbations_per_eval`` are left at ``None``, sets
   them from attribkit's ``batch_size`` or else from the memory one row took in
   the probe forward (:mod:`attribkit.torch.chunking`): integrated gradients on
   4 ResNet-50 images at 224 px runs its 50 steps in chunks within 1 GiB instead
   of one 200-row batch (16 GiB);
5. calls ``Captum(...).attribute(...)`` with everything else unchanged, under a
   progress bar (past 2 s) counting the rows it forwards; an ``AssertionError``
   from inside Captum becomes an attribkit error.

All of it runs inside :func:`attribkit.torch.torch_kernel` (model guard, input
checks, layer resolution, chunking, the ``Attribution``), plus a guard for the
attributes Captum sets on modules (LRP's ``rule``, DeepLift's saved tensors),
which are removed (or put back) even when the model raises. The DeepLift
family explains a private copy of the model with one nonlinearity module per
call (:mod:`attribkit_captum.callsites`): the user's model is only read.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import captum
import captum.attr as captum_attr
import torch
from torch import nn

from attribkit.errors import InputError, LayerError, MissingDependencyError
from attribkit.predict import as_predict
from attribkit.torch import torch_kernel
from attribkit.progress import progress
from attribkit.torch.capture import forward_hook, forward_hooks
from attribkit.torch.chunking import ActivationMeter, rows_per_chunk
from attribkit.torch.guard import model_guard
from attribkit.torch.targets import ChunkTarget
from attribkit_captum import callsites, defaults, rules
from attribkit_captum.guards import captum_assertions, module_attributes_kept, quiet, seeded
from attribkit_captum.heads import TargetHead
from attribkit_captum.table import INIT_OPTIONS, Entry

SHAP_BASELINES = ("DeepLiftShap", "GradientShap", "LayerDeepLiftShap", "LayerGradientShap")
PERMUTATION = ("FeaturePermutation", "LayerFeaturePermutation")
#: Captum 0.8/0.9 layer perturbation methods that fail with per-image class targets
#: (LayerFeaturePermutation always, LayerFeatureAblation with perturbations_per_eval > 1):
#: they get a forward that selects the target itself (:class:`~attribkit_captum.heads.TargetHead`).
SELECT_IN_FORWARD = ("LayerFeaturePermutation", "LayerFeatureAblation")
#: Rows per forward for perturbation methods when neither batch_size nor
#: perturbations_per_eval is given (Captum's own default is one perturbation per forward).
FORWARD_ROWS = 32


def probe(model: Any, inputs: torch.Tensor, target: ChunkTarget, layer: nn.Module | None,
          to_layer_input: bool = False) -> tuple[torch.Tensor | None, tuple[int, ...] | None]:
    """One forward without gradients: the class indices (``None`` for a callable
    target or a target object, whose score is read once: a wrong shape, a class out of
    range, an output the target cannot read raise here, before Captum runs) and the
    layer's output (or input) shape."""
    shapes: list[tuple[int, ...]] = []

    def record(_module: nn.Module, inp: Any, out: Any) -> None:
        value = inp if to_layer_input else out
        value = value[0] if isinstance(value, (tuple, list)) else value
        shapes.append(tuple(value.shape))

    hooks = [(layer, record)] if layer is not None else []
    with forward_hooks(hooks), torch.no_grad():
        scores = model(inputs)
    if target.is_callable or target.is_object:
        target.select(scores)
        indices = None
    else:
        indices = target.indices_for(scores)
    return indices, (shapes[-1] if shapes else None)


def single(value: Any, entry: Entry) -> torch.Tensor:
    """Captum returns a tuple for tuple inputs / multi-tensor layers; attribkit wants one tensor."""
    if isinstance(value, (tuple, list)):
        if len(value) != 1:
            raise InputError(
                f"captum.{entry.name}: the layer has {len(value)} input/output tensors; "
                "choose a layer with a single tensor output"
            )
        value = value[0]
    return value


def _passes_relevance(module: nn.Module) -> bool:
    """Captum's LRP gives these no rule: relevance passes through them unchanged."""
    try:
        from captum.attr._core.lrp import SUPPORTED_NON_LINEAR_LAYERS as passthrough
    except ImportError:  # private name; the list as of Captum 0.9
        passthrough = [nn.ReLU, nn.Dropout, nn.Tanh]
    if getattr(module, "rule", False) is not False:
        return module.rule is None
    return type(module) in tuple(passthrough)


def lrp_layer(model: nn.Module, layer: nn.Module, to_input: bool) -> nn.Module:
    """The module whose relevance equals ``layer``'s, for Captum's LayerLRP.

    LayerLRP reads relevance from a layer's LRP rule, so it needs a leaf layer
    with a rule. A ``Sequential`` is replaced by its last (first, for
    ``attribute_to_layer_input``) leaf; a ReLU/Dropout/Tanh output by the output of
    the module before it in its ``Sequential`` (relevance passes through them).
    """
    def descend(module: nn.Module) -> nn.Module:
        while isinstance(module, nn.Sequential) and len(module):
            module = module[0] if to_input else module[-1]
        return module

    layer = descend(layer)
    parents = {id(child): (parent, i) for parent in model.modules()
               if isinstance(parent, nn.Sequential) for i, child in enumerate(parent)}
    while not to_input and _passes_relevance(layer) and id(layer) in parents:
        parent, i = parents[id(layer)]
        if i == 0:
            break
        layer = descend(parent[i - 1])
    if next(layer.children(), None) is not None or _passes_relevance(layer):
        names = {id(m): n for n, m in model.named_modules()}
        leaves = [names[id(m)] for m in layer.modules()
                  if next(m.children(), None) is None and not _passes_relevance(m)
                  and id(m) in names]
        hint = f" inside it, e.g. {', '.join(repr(n) for n in leaves[-3:])}" if leaves else ""
        raise LayerError(
            f"captum.layer_lrp needs a leaf layer with an LRP rule (a Conv, Linear, pooling "
            f"or BatchNorm layer, or one with a .rule); {type(layer).__name__} is not one: "
            f"pass layer= such a module{hint}"
        )
    return layer


def construct(entry: Entry, cls: type, forward: Any, layer: nn.Module | None,
              init: dict[str, Any]) -> Any:
    args = (forward, layer) if entry.layer else (forward,)
    try:
        return cls(*args, **init)
    except ImportError as exc:  # Lime / KernelShap default to scikit-learn models
        raise MissingDependencyError(
            f"captum.{entry.name} with its default interpretable model needs scikit-learn "
            f"({exc}): pip install scikit-learn, or pass interpretable_model= (e.g. "
            "captum._utils.models.linear_model.SGDLasso())"
        ) from exc


def run(entry: Entry, cls: type, model: Any, inputs: torch.Tensor, target: ChunkTarget,
        layer: nn.Module | None, options: dict[str, Any]) -> torch.Tensor:
    """Explain one chunk with Captum's ``cls``: the body of every adapter kernel.

    For the DeepLift family ``model`` is the private copy :func:`build` made: the
    probe forward counts the nonlinearities' calls and reused ones are split there.
    """
    opts = dict(options)
    batch_size = opts.pop("_batch_size", None)
    seed = opts.pop("seed", None)
    grid = opts.pop("grid", None)
    group = opts.pop("group", None)
    init = {k: opts.pop(k) for k in INIT_OPTIONS if k in opts}
    if "integration_method" in opts:
        opts["method"] = opts.pop("integration_method")
    if entry.model and not isinstance(model, nn.Module):
        raise InputError(
            f"captum.{entry.name} hooks the model's layers: it needs a torch.nn.Module, "
            f"got {type(model).__name__}"
        )
    x = inputs.detach()
    rules.validate(entry, options, "inputs", inputs=x)
    if entry.cls in PERMUTATION and len(x) < 2:
        raise InputError(
            f"captum.{entry.name} permutes features across the images of a chunk, so it needs "
            f"at least 2 images per chunk, got {len(x)} (batch_size and the batch size set this)"
        )
    to_input = bool(opts.get("attribute_to_layer_input", False))
    measured = layer if "layer_mask" in opts else None
    meter = ActivationMeter(model)
    if entry.cls in callsites.DEEPLIFT_FAMILY:
        with callsites.call_counts(model) as counts, meter:
            indices, layer_shape = probe(model, x, target, measured, to_input)
        callsites.split_reused(model, counts, layer, entry.method_name)
    else:
        with meter:
            indices, layer_shape = probe(model, x, target, measured, to_input)
    if layer_shape is not None:
        rules.validate(entry, options, "layer", layer_shape=layer_shape)

    head: TargetHead | None = None
    if target.is_callable or target.is_object or entry.cls in SELECT_IN_FORWARD:
        head = TargetHead(model, target, indices, len(x))
        forward: Any = head
        captum_target = None
    else:
        forward, captum_target = model, indices

    rows = 1 if entry.per_image else len(x)
    if "internal_batch_size" in opts and opts["internal_batch_size"] is None:
        opts["internal_batch_size"] = internal_batch_size(entry, opts["n_steps"], rows, batch_size,
                                                          meter.row_bytes(x, grad=True))
    if "perturbations_per_eval" in opts and opts["perturbations_per_eval"] is None:
        forward_rows = batch_size or min(FORWARD_ROWS, rows_per_chunk(meter.row_bytes(x, grad=False)))
        opts["perturbations_per_eval"] = max(1, int(forward_rows) // rows)
    if "feature_mask" in opts:
        opts["feature_mask"] = defaults.feature_mask(x, opts["feature_mask"], grid)
    if "layer_mask" in opts:
        opts["layer_mask"] = defaults.layer_mask(layer_shape, opts["layer_mask"], group, x.device)
    if "sliding_window_shapes" in opts:
        opts["sliding_window_shapes"], opts["strides"] = defaults.occlusion_window(
            x, opts["sliding_window_shapes"], opts["strides"])
    baseline_spec = opts.pop("baselines", None)
    has_baselines = "baselines" in entry.options

    if entry.cls == "LayerLRP":
        layer = lrp_layer(model, layer, to_input)
    rejected = functools.partial(captum_assertions, entry.method_name, entry.options)
    with rejected():
        explainer = construct(entry, cls, forward, layer, init)

    def call(xs: torch.Tensor, tgt: Any, baselines: Any, row: int | None = None
             ) -> torch.Tensor:
        kwargs = dict(opts)
        mask = kwargs.get("feature_mask")
        if row is not None and isinstance(mask, torch.Tensor) and len(mask) == len(x) > 1:
            kwargs["feature_mask"] = mask[row:row + 1]  # a per-image mask, one image at a time
        if has_baselines:
            kwargs["baselines"] = baselines
        if entry.target:
            kwargs["target"] = tgt
        if head is not None:
            head.use_images(row)
        with rejected():
            return single(explainer.attribute(xs, **kwargs), entry)

    with rows_counted(entry, model, opts, len(x)):
        if not entry.per_image:
            with seeded(seed, x.device):
                return call(x, captum_target, defaults.baselines(x, baseline_spec))
        return per_image(entry, x, captum_target, baseline_spec, seed, call)


def per_image(entry: Entry, x: torch.Tensor, captum_target: Any, baseline_spec: Any,
              seed: Any, call: Any) -> torch.Tensor:
    """Captum called once per image (``entry.per_image``), re-seeded for each."""
    maps = []
    for i in range(len(x)):
        xi = x[i:i + 1]
        tgt = None if captum_target is None else captum_target[i:i + 1]
        if entry.cls in SHAP_BASELINES:
            baselines = defaults.baseline_distribution(xi, baseline_spec)
        else:
            spec = baseline_spec
            if isinstance(spec, torch.Tensor) and spec.ndim == x.ndim and len(spec) == len(x) > 1:
                spec = spec[i:i + 1]
            baselines = defaults.baselines(xi, spec)
        with seeded(seed, x.device):
            maps.append(call(xi, tgt, baselines, i))
    return torch.cat(maps)


def internal_batch_size(entry: Entry, n_steps: int, rows: int, batch_size: int | None,
                        row_bytes: int) -> int | None:
    """Captum's ``internal_batch_size`` when the user left it at ``None``: from
    ``batch_size`` if given, else the rows of :func:`~attribkit.torch.chunking.rows_per_chunk`
    (``None``, Captum's single batch, when all ``n_steps * rows`` fit anyway)."""
    # Conductance differences consecutive steps: Captum needs >= 2 steps per batch.
    least = 2 if entry.cls == "LayerConductance" else 1
    if batch_size:
        return max(int(batch_size), least * rows)
    steps = n_steps + (entry.cls == "LayerConductance")  # it evaluates n_steps + 1 points
    chunk = rows_per_chunk(row_bytes * rows, least=least, total=steps)  # in steps of all rows
    return chunk * rows if chunk < steps else None


@contextlib.contextmanager
def rows_counted(entry: Entry, model: Any, opts: dict[str, Any], images: int) -> Iterator[None]:
    """A progress bar (past 2 s) over the rows Captum runs through ``model``:
    of ``n_steps * images`` for the integrated-gradients family, else of an unknown total."""
    module = model if isinstance(model, nn.Module) else getattr(model, "module", None)
    if not isinstance(module, nn.Module):  # an ONNX session or a callable: no bar
        yield
        return
    total = opts["n_steps"] * images if "internal_batch_size" in opts else None
    with progress(total, f"{entry.method_name}: rows", unit="row") as bar:
        def count(_module: nn.Module, args: tuple) -> None:
            if args and isinstance(args[0], torch.Tensor):
                bar.update(len(args[0]))

        with forward_hook(module, count, pre=True):
            yield


def build(entry: Entry):
    """The attribkit implementation of ``entry`` (what the spec's factory returns)."""
    cls = getattr(captum_attr, entry.cls)

    def kernel_body(model, inputs, target, layer, options):
        with module_attributes_kept(model), quiet():
            return run(entry, cls, model, inputs, target, layer, options)

    if entry.layer:
        def kernel(model, inputs, target, layer, **options):
            return kernel_body(model, inputs, target, layer, options)
    else:
        def kernel(model, inputs, target, **options):
            return kernel_body(model, inputs, target, None, options)
    kernel.__name__ = kernel.__qualname__ = entry.name
    kernel.__doc__ = f"Captum's {entry.cls} on one chunk: {entry.description}."
    chunked = torch_kernel(kernel, image=entry.image, autograd="autograd" in entry.needs)

    @functools.wraps(chunked)
    def impl(model, inputs, *, method: str, target: Any = None, layer: Any = None,
             batch_size: int | None = None, options: dict[str, Any] | None = None):
        options = dict(options or {})
        rules.validate(entry, options, "options")
        if entry.needs == ("forward",) and not isinstance(model, nn.Module):
            model = as_predict(model)  # ONNX sessions and NumPy callables: tensors in, tensors out
        if entry.cls in callsites.DEEPLIFT_FAMILY and isinstance(model, nn.Module):
            with model_guard(model, exclusive=False):  # no exclusive call is changing it
                twin = callsites.private_copy(model, entry.method_name)
            model, layer = twin, callsites.counterpart(model, twin, layer)
        result = chunked(model, inputs, method=method, target=target, layer=layer,
                         batch_size=batch_size, options={**options, "_batch_size": batch_size})
        result.meta["options"] = options
        result.meta["captum"] = {"class": entry.cls, "version": captum.__version__}
        return result

    impl.entry = entry
    impl.captum_class = cls
    return impl
