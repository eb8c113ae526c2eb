"""Load a model from a short spec: ``torchvision:NAME``, ``timm:NAME``, ``hf:PATH`` or ``package.module:factory``.

Weights are ``None`` (random initialisation), ``"DEFAULT"`` (the pretrained
weights of a torchvision or timm model, downloaded once and cached), a
torchvision weights name (``"IMAGENET1K_V1"`` or ``"ResNet18_Weights.IMAGENET1K_V1"``)
or a state-dict file, read with ``torch.load(weights_only=True)`` so that a file
can never run code. Models are built with torch's random generator seeded (0,
on a forked state: the caller's generator is untouched), so random weights are
the same in every process and every run (``torchrun`` ranks, a resumed run). A ``package.module:factory`` spec imports that module and
calls ``factory()``: it runs that module's code.

``hf:PATH`` loads a Hugging Face model saved in the local folder ``PATH``
(``save_pretrained``; its weights are the folder's, nothing is downloaded, no code
from the folder runs; :mod:`attribkit.models_hf`); :func:`load_tokenizer` reads the
tokenizer saved beside it.

torch, torchvision and timm are imported inside the functions, so importing
this module stays cheap.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from attribkit.errors import DownloadError, MissingDependencyError, ModelLoadError

if TYPE_CHECKING:
    import torch

SPEC_FORMS = "torchvision:NAME, timm:NAME, hf:PATH or package.module:factory"


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model built from a spec, with what its weights say about it.

    Attributes:
        model: the ``torch.nn.Module``, in eval mode, on the CPU.
        class_names: the class names the pretrained weights carry (torchvision's
            ``weights.meta["categories"]``, timm's ImageNet labels), else ``None``.
        weights: where the weights came from: ``"random"``, the weights name,
            ``"file PATH"``, ``"factory"`` (whatever ``factory()`` returned) or
            ``"folder PATH"`` (``hf:PATH``).
    """

    model: torch.nn.Module
    class_names: tuple[str, ...] | None
    weights: str


def note_on_stderr(message: str) -> None:
    """Print ``message`` on stderr (the default ``log`` of :func:`open_model`)."""
    print(message, file=sys.stderr)


def open_model(spec: str, weights: str | None = None, *,
               log: Callable[[str], None] | None = note_on_stderr) -> LoadedModel:
    """Build the model ``spec`` names and give it ``weights`` (see the module docstring).

    ``log`` receives a note when a torchvision or timm model keeps random weights
    (``None``: no note). Raises :class:`~attribkit.errors.ModelLoadError` for an
    unknown model or unusable weights, :class:`~attribkit.errors.DownloadError` when
    pretrained weights cannot be downloaded, and
    :class:`~attribkit.errors.MissingDependencyError` for ``timm:`` without timm and
    ``hf:`` without transformers.
    """
    source, _, name = spec.partition(":")
    if not source or not name:
        raise ModelLoadError(f"a model is {SPEC_FORMS}, got {spec!r}")
    import torch

    with torch.random.fork_rng(devices=[]):  # random weights are the same in every process and run
        torch.manual_seed(0)
        if source == "torchvision":
            loaded = _torchvision(name, weights, spec)
        elif source == "timm":
            loaded = _timm(name, weights, spec)
        elif source == "hf":
            loaded = _hf(name, weights, spec)
        else:
            loaded = _factory(source, name, weights, spec)
    if loaded.weights == "random" and log is not None:
        log(f"note: {spec} has random weights; pass weights DEFAULT for the pretrained ones, or a state-dict file")
    loaded.model.eval()
    return loaded


def load_model(spec: str, weights: str | None = None, *,
               log: Callable[[str], None] | None = note_on_stderr) -> torch.nn.Module:
    """The ``torch.nn.Module`` of :func:`open_model` (eval mode, CPU)."""
    return open_model(spec, weights, log=log).model


def load_tokenizer(spec: str) -> Any:
    """The tokenizer of ``hf:PATH`` (or a plain ``PATH``): ``AutoTokenizer`` of the folder
    written by ``tokenizer.save_pretrained(PATH)``, or a ``tokenizers`` JSON file
    (``tokenizers.Tokenizer.from_file``). Nothing is downloaded. Raises
    :class:`~attribkit.errors.ModelLoadError` naming the path when there is no tokenizer
    there, :class:`~attribkit.errors.MissingDependencyError` without transformers."""
    from attribkit.models_hf import hf_tokenizer

    path = spec[3:] if spec.startswith("hf:") else spec
    return hf_tokenizer(path, spec)


def load_state_file(model: torch.nn.Module, path: str | Path) -> None:
    """Load the state dict saved in ``path`` into ``model``.

    The file is read with ``torch.load(weights_only=True)``: a file that holds
    pickled objects other than tensors is refused, never executed. Raises
    :class:`~attribkit.errors.ModelLoadError` naming the reason, or naming a few
    missing, unexpected and wrongly shaped keys when the state dict does not fit.
    """
    import pickle

    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(_refused_message(path, str(exc))) from None
    except (EOFError, RuntimeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "the file is empty or truncated"
        raise ModelLoadError(f"weights file {path} cannot be read by torch.load: {reason}") from None
    if not isinstance(state, Mapping):
        raise ModelLoadError(f"weights file {path} holds a {type(state).__name__}, "
                             "not a state dict (a mapping of parameter names to tensors)")
    problems = _mismatches(model.state_dict(), state)
    if problems:
        raise ModelLoadError(f"weights file {path} does not fit {type(model).__name__}: {problems}")
    model.load_state_dict(state)


# ----------------------------------------------------------------------- sources


def _torchvision(name: str, weights: str | None, spec: str) -> LoadedModel:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(name)
    except ValueError:
        raise ModelLoadError(_unknown(spec, name, torchvision.models.list_models())) from None
    short = weights.removeprefix(f"{enum.__name__}.") if weights else weights
    choice = _weights_choice(short, list(enum.__members__), spec)
    if not isinstance(choice, str):
        model = torchvision.models.get_model(name, weights=None)
        return _with_file(model, choice)
    chosen = enum[choice]
    try:
        model = torchvision.models.get_model(name, weights=chosen)
    except OSError as exc:  # urllib's URLError, socket errors
        raise DownloadError(_torchvision_download_message(chosen, exc)) from None
    categories = chosen.meta.get("categories")
    return LoadedModel(model, tuple(categories) if categories else None, str(chosen))


def _timm(name: str, weights: str | None, spec: str) -> LoadedModel:
    try:
        import timm
    except ImportError:
        raise MissingDependencyError(f"{spec} needs timm: pip install timm") from None
    if not timm.is_model(name):
        raise ModelLoadError(_unknown(spec, name, timm.list_models()))
    choice = _weights_choice(weights, ["DEFAULT"], spec)
    if not isinstance(choice, str):
        return _with_file(timm.create_model(name, pretrained=False), choice)
    try:
        model = timm.create_model(name, pretrained=True)
    except OSError as exc:  # huggingface_hub's offline errors are OSErrors
        raise DownloadError(_timm_download_message(name, exc)) from None
    return LoadedModel(model, _timm_class_names(model), f"timm pretrained {name}")


def _hf(path: str, weights: str | None, spec: str) -> LoadedModel:
    from attribkit.models_hf import open_hf

    if weights is not None:
        raise ModelLoadError(f"{spec} takes its weights from its folder; weights {weights!r} do not apply")
    model, names = open_hf(path, spec)
    return LoadedModel(model, names, f"folder {path}")


def _factory(module_name: str, attr: str, weights: str | None, spec: str) -> LoadedModel:
    import torch

    choice = _weights_choice(weights, [], spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelLoadError(f"cannot import {module_name!r} for {spec}: {exc} (the module must be "
                             "installed or on the Python path)") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        found = [n for n in dir(module) if callable(getattr(module, n)) and not n.startswith("_")]
        close = difflib.get_close_matches(attr, found, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"module {module_name!r} has no callable {attr!r} for {spec}{hint}")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise ModelLoadError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    if choice is None:
        return LoadedModel(model, None, "factory")
    return _with_file(model, choice)


# ----------------------------------------------------------------------- helpers


def _weights_choice(weights: str | None, names: Sequence[str], spec: str) -> str | Path | None:
    """``None``, one of ``names``, or an existing file; anything else is an error listing these."""
    if weights is None or weights in names:
        return weights
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    accepted = ", ".join([*names, "an existing state-dict file"])
    why = "a folder" if path.is_dir() else "no such file"
    extra = "" if names else " (a package.module:factory model takes only a file; its factory picks any other)"
    raise ModelLoadError(f"weights {weights!r} for {spec}: {why}, and not a weights name; "
                         f"accepted: {accepted}{extra}")


def _with_file(model: Any, path: Path | None) -> LoadedModel:
    if path is None:
        return LoadedModel(model, None, "random")
    load_state_file(model, path)
    return LoadedModel(model, None, f"file {path}")


def _unknown(spec: str, name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown model {spec!r}{hint}"


def _few(items: Sequence[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def _mismatches(expected: Mapping[str, Any], given: Mapping[str, Any]) -> str:
    """A few missing / unexpected / wrongly shaped keys of ``given``, or ``""`` when it fits."""
    missing = [k for k in expected if k not in given]
    unexpected = [str(k) for k in given if k not in expected]
    shapes = [f"{k} is {tuple(given[k].shape)} in the file, {tuple(v.shape)} in the model"
              for k, v in expected.items() if k in given and getattr(given[k], "shape", v.shape) != v.shape]
    parts = [f"{len(keys)} {label}: {_few(keys)}" for label, keys in
             (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)) if keys]
    return "; ".join(parts)


def _refused_message(path: str | Path, error: str) -> str:
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\n|$)", error)
    reason = found.group(1).strip() if found else error.strip().splitlines()[0]
    pickled = re.search(r"GLOBAL (\S+)", reason)
    if pickled:
        return (f"weights file {path} is not a plain state dict: it holds pickled objects ({pickled.group(1)}), "
                "which torch.load(weights_only=True) refuses because loading them runs code from the file; "
                f"if you trust the file, load it once with torch.load({str(path)!r}, weights_only=False), "
                "save only the tensors with torch.save(model.state_dict(), 'state_dict.pt') and pass that file")
    return (f"weights file {path} cannot be read by torch.load(weights_only=True): {reason} "
            "(is it a file written by torch.save?)")


def _torchvision_download_message(weights: Any, exc: OSError) -> str:
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    reason = getattr(exc, "reason", None) or exc
    return (f"could not download {weights} from {weights.url} ({reason}); put that file at {cached} "
            "(it is used from there without a download) or pass a local state-dict file as the weights")


def _timm_download_message(name: str, exc: OSError) -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"could not download the timm weights of {name} ({reason}); huggingface_hub caches them "
            f"under {HF_HUB_CACHE}: fill that cache on a machine with network access, or pass a local "
            "state-dict file as the weights")


def _timm_class_names(model: Any) -> tuple[str, ...] | None:
    """ImageNet label names of a pretrained timm model (the first synonym of each), if it has them."""
    from timm.data import ImageNetInfo, infer_imagenet_subset

    subset = infer_imagenet_subset(model)
    if subset is None:
        return None
    return tuple(d.split(",")[0] for d in ImageNetInfo(subset).label_descriptions())
