"""attribkit: what a neural network looks at.

The public API is imported lazily, so ``import attribkit`` loads neither
torch nor any plugin::

    import attribkit as ak
    r = ak.explain(model, images, method="saliency")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "explain": "attribkit.api",
    "methods": "attribkit.api",
    "get_method": "attribkit.api",
    "plugins": "attribkit.api",
    "metrics": "attribkit.api",
    "get_metric": "attribkit.api",
    "MetricSpec": "attribkit.registry",
    "Attribution": "attribkit.result",
    "MethodSpec": "attribkit.registry",
    "hookimpl": "attribkit.hookspecs",
    "errors": "attribkit.errors",
    # the visualiser (matplotlib, imported on first use)
    "show": "attribkit.viz.figures",
    "show_panels": "attribkit.viz.figures",
    "save": "attribkit.viz.figures",
    "compare": "attribkit.viz.grids",
    "compare_models": "attribkit.viz.grids",
    "render": "attribkit.viz.rendering",
    "plot_speed": "attribkit.viz.benchplots",
    "plot_curves": "attribkit.viz.benchplots",
    "plot_metric_table": "attribkit.viz.benchplots",
    # feature visualisation (torch, imported on first use)
    "feature_maps": "attribkit.features",
    "FeatureMaps": "attribkit.features",
    "maximize_activation": "attribkit.features",
    "Visualization": "attribkit.features",
    "filter_grid": "attribkit.features",
    # attribution-guided training (torch, imported on first use)
    "CAMLoss": "attribkit.training",
    "RRRLoss": "attribkit.training",
    "centre_kernel": "attribkit.training",
    # any model as predict(batch) -> scores, for black-box methods and metrics
    "as_predict": "attribkit.predict",
    "evaluate": "attribkit.evaluation.api",
    "Predict": "attribkit.predict",
    # images in and out
    "load_image": "attribkit.images",
    "to_input": "attribkit.images",
    "normalize": "attribkit.images",
    "denormalize": "attribkit.images",
    "to_display": "attribkit.images",
    "imagenet": "attribkit.images",
    "ClassIndex": "attribkit.images",
    # models by name: torchvision:NAME, timm:NAME, hf:PATH, package.module:factory, with weights
    "load_model": "attribkit.models",
    "open_model": "attribkit.models",
    "load_tokenizer": "attribkit.models",
    # whole datasets into a resumable store (zarr), sharded under torchrun
    "explain_dataset": "attribkit.datasets.run",
    "open_store": "attribkit.datasets.store",
    "AttributionStore": "attribkit.datasets.store",
    "image_folder": "attribkit.datasets.folder",
    "recode_store": "attribkit.datasets.recode",
    "per_item": "attribkit.datasets.targets",
    # the self-contained HTML report of a store or a bench folder
    "write_report": "attribkit.report",
    # target objects: segmentation, detection, embeddings and CLIP, multi-label
    "targets": "attribkit.targets",
    "Class": "attribkit.targets",
    "Labels": "attribkit.targets",
    "Region": "attribkit.targets",
    "Box": "attribkit.targets",
    "Similarity": "attribkit.targets",
    # text: a continuation of a causal LM's prompt; token results
    "Continuation": "attribkit.text.targets",
    "TokenAttribution": "attribkit.text.result",
}
_EXPORTS.update({name: "attribkit.errors" for name in (
    "AttribkitError", "UnknownMethodError", "InvalidOptionError", "InputError",
    "TargetError", "LayerError", "GradientModeError", "PluginError",
    "MissingDependencyError", "DuplicateMethodError", "SpecError", "ModelLoadError", "DownloadError",
)})

__all__ = sorted(_EXPORTS)
# what the lazily imported parts run on; a missing one is a MissingDependencyError
_OPTIONAL_ENGINES = ("torch", "torchvision", "matplotlib", "zarr")


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'attribkit' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name not in _OPTIONAL_ENGINES:
            raise
        from attribkit.errors import MissingDependencyError

        raise MissingDependencyError(
            f"attribkit.{name} needs {exc.name}, which is not installed: pip install {exc.name} "
            "(for PyTorch, the CPU wheel is enough: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)"
        ) from exc
    value = module if name in ("errors", "targets") else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
