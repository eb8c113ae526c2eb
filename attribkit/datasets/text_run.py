"""``explain_dataset`` on text: the plan, the store's creation and each batch's columns.

The run itself (resuming, torchrun, the writer, the lock, the run records) is the
images' (:mod:`attribkit.datasets.run`); a :class:`TextSetup` in ``plan.text``
gives it the text loader, columns and digests. Layout of a text store
(:mod:`attribkit.datasets.text_store`): ``T`` is ``max_length`` (measured over the
data in planning, or given: longer texts are then truncated by the tokenizer),
every row padded to it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from attribkit import __version__
from attribkit.datasets import text_items as X
from attribkit.datasets.compute import batch_target, spread
from attribkit.datasets.encoding import codecs, stored_maps
from attribkit.datasets.items import item_ids, unwrap
from attribkit.datasets.planning import Plan
from attribkit.datasets.settings import as_json, data_fingerprint, describe_target, fingerprint, model_fingerprint
from attribkit.datasets.settings import split_options
from attribkit.errors import InputError, InvalidOptionError, TargetError

#: explain's text options, given to every method (:mod:`attribkit.text.detect`), and max_length
TEXT_OPTIONS = ("tokenizer", "embedding", "max_new_tokens", "skip_special_tokens", "score", "max_length")


def is_text_data(data: Any, options: Mapping[str, Any]) -> bool:
    """Whether ``explain_dataset`` was given text: ``tokenizer=`` (no item is read here: a
    run reads the data only once it holds the store's lock)."""
    return options.get("tokenizer") is not None


@dataclasses.dataclass
class TextSetup:
    """What the text run adds to its :class:`~attribkit.datasets.planning.Plan`."""

    tokenize: X.Tokenize
    options: dict[str, Any]  # explain's text options (tokenizer aside)
    max_length: int
    max_output: int
    carries: bool  # the items carry their continuations
    kind: str | None = None  # "class" / "continuation" / "callable", from the first item's result

    @property
    def tokenizer(self) -> Any:
        return self.tokenize.vocab.tokenizer

    def batches(self, plan: Plan, numbers: Sequence[int], digests: bool = False) -> Any:
        return X.text_batches(plan.dataset, numbers, plan.batch_size, plan.num_workers, self.tokenize, digests)

    digests = staticmethod(X.text_digests)
    inputs_named = "token ids, label, continuation"

    def columns(self, plan: Plan, batch: X.TextRows) -> dict[str, np.ndarray]:
        return text_columns(plan, self, batch)

    def probe_and_create(self, plan: Plan, out: Path) -> tuple[bool, bool, dict[str, Any], list[int]]:
        return probe_and_create(plan, self, out)


def make_text_plan(model: Any, data: Any, methods: str | Sequence[str], target: Any, layer: Any, batch_size: Any,
                   num_workers: Any, metrics: Sequence[str], strict: bool, options: Mapping[str, Any]) -> Plan:
    """The :class:`Plan` of a text run, checked before any work."""
    from attribkit.api import get_method

    if not isinstance(model, torch.nn.Module):
        raise InputError(f"explain_dataset takes a torch.nn.Module, got {type(model).__name__}")
    if layer is not None:
        raise InvalidOptionError(f"text methods attribute to the tokens and take no layer=, got {layer!r}")
    if metrics:
        raise InvalidOptionError("metrics= scores images in explain_dataset; score a text store's "
                                 "attributions with ak.evaluate on store.attribution(method)")
    names = [methods] if isinstance(methods, str) else list(methods)
    if not names:
        raise InvalidOptionError("methods is empty: name at least one method (attribkit methods lists them)")
    specs = [get_method(name) for name in names]
    if len({s.name for s in specs}) != len(specs):
        raise InvalidOptionError(f"a method is named twice in methods: {', '.join(names)}")
    text_specs = []
    for spec in specs:
        derived = spec.for_text()
        if derived is None:
            from attribkit.host import get_host

            raise InvalidOptionError(f"method {spec.name!r} has no kernel for text inputs; text methods: "
                                     + ", ".join(s.name for s in get_host().registry if s.text is not None))
        text_specs.append(derived)
    options = dict(options)
    text = {key: options.pop(key) for key in TEXT_OPTIONS if key in options}
    tokenizer, max_length = text.pop("tokenizer", None), text.pop("max_length", None)
    if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
        raise InvalidOptionError(f"max_length must be a positive integer, got {max_length!r}")
    dataset, batch_size, num_workers = unwrap(data, batch_size, num_workers)
    tokenize = X.Tokenize(tokenizer, max_length, truncate=max_length is not None)
    longest, longest_output, first = X.measure(dataset, tokenize)
    if first is None:
        raise InputError("the text data has no readable item" if len(dataset) else "the data has no items")
    if isinstance(target, str) and target != "label":
        raise TargetError(f"target {target!r}: a string target can only be 'label' (the items' labels); a "
                          "continuation per text is the item's second part: (text, continuation)")
    if target is not None and not callable(target) and not isinstance(target, (str, int, np.integer)):
        target = np.asarray(target)
        if target.shape != (len(dataset),):
            raise TargetError(f"target holds {target.size} classes for {len(dataset)} items; "
                              "pass one per item, an int, 'label', None or a callable")
    if longest_output and target is not None:
        raise TargetError(f"the data's items carry their continuations, and target={target!r} was given "
                          "too: pass target=None to explain each item's own")
    max_new = text.get("max_new_tokens", 1)
    setup = TextSetup(tokenize=tokenize, options=text, max_length=max_length or longest,
                      max_output=longest_output or (max_new if isinstance(max_new, int) else 1),
                      carries=bool(longest_output))
    _check_positions(model, setup)
    parameter = next(model.parameters(), None)
    return Plan(model=model, dataset=dataset, specs=specs, options=split_options(text_specs, options), layers={},
                metrics=[], metric_options={}, target=target, batch_size=batch_size, num_workers=num_workers,
                ids=item_ids(dataset)[0], device=parameter.device if parameter is not None else torch.device("cpu"),
                strict=strict, text=setup)


def _check_positions(model: Any, setup: TextSetup) -> None:
    """A text longer than the model's positions is refused before any work (not at its batch)."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    needed = setup.max_length + (setup.max_output if setup.carries else 0)
    if isinstance(positions, int) and needed > positions:
        raise InputError(f"the longest text of the data has {setup.max_length} tokens"
                         + (f" and its continuation up to {setup.max_output}" if setup.carries else "")
                         + f", beyond the model's {positions} positions: pass max_length= (texts are then "
                         "truncated by the tokenizer)")


def tokenizer_setting(tokenizer: Any) -> dict[str, Any]:
    """The tokenizer's class, name and a fingerprint of its vocabulary (stored settings)."""
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    text = "\n".join(f"{k}\t{v}" for k, v in sorted(vocab.items(), key=lambda kv: kv[1]))
    return {"class": f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}",
            "name": str(getattr(tokenizer, "name_or_path", "") or ""), "vocab": fingerprint(text.encode())}


def _explain(plan: Plan, setup: TextSetup, spec: Any, ids: torch.Tensor, mask: torch.Tensor, target: Any) -> Any:
    from attribkit.api import explain

    inputs = {"input_ids": ids.to(plan.device), "attention_mask": mask.to(plan.device)}
    return explain(plan.model, inputs, target, method=spec.name, tokenizer=setup.tokenizer, **setup.options,
                   **plan.options[spec.name])


def _target(plan: Plan, rows: np.ndarray, labels: np.ndarray | None, outputs: list[list[int]] | None) -> Any:
    from attribkit.text.targets import Continuation

    if outputs is not None:
        return Continuation(outputs)
    return batch_target(plan, rows, labels)


def probe_and_create(plan: Plan, setup: TextSetup, out: Path) -> tuple[bool, bool, dict[str, Any], list[int]]:
    """Explain the first readable item with every method (``explain``'s errors, before any
    work), then resume the store at ``out`` or create it."""
    from attribkit.datasets.resume import repair
    from attribkit.datasets.store import create_store, resume_store

    index = next(i for i in range(len(plan.dataset))
                 if isinstance(X.parse_text_item(plan.dataset[i], i), X.TextItem))
    rows = X.TextCollate(plan.batch_size, setup.tokenize)([(index, plan.dataset[index])])
    if rows.problem:
        raise InputError(rows.problem)
    if isinstance(plan.target, str) and rows.labels is None:
        raise TargetError("target='label' explains each item's label, but the data's items have none "
                          "(items are (text, label) for labels)")
    settings = as_json({
        "input": "text",
        "model": model_fingerprint(plan.model),
        "tokenizer": tokenizer_setting(setup.tokenizer),
        "data": data_fingerprint(plan.dataset, plan.ids),
        "methods": [s.name for s in plan.specs],
        "options": plan.options,
        "text_options": setup.options,
        "layers": {},
        "target": {"from_items": "continuation"} if setup.carries else describe_target(plan.target, len(plan.dataset)),
        "batch_size": plan.batch_size,
        "metrics": [],
        "metric_options": {},
        "max_length": setup.max_length,
        "truncate": setup.tokenize.truncate,
        "dtype": plan.dtype,
        "compressor": plan.compressor,
        "attribkit": __version__,
    })
    if (out / "zarr.json").is_file():
        store = resume_store(out, settings)
        return store.has("labels"), store.has("predictions"), {}, repair(store)
    target = _target(plan, np.array([index]), rows.labels, rows.outputs)
    kind = None
    for spec in plan.specs:
        result = _explain(plan, setup, spec, rows.ids, rows.mask, target)
        stored_maps(result.values, plan.dtype, spec.name, (index, index))
        kind = result.meta.get("kind")
    T, W = setup.max_length, setup.max_output
    columns: dict[str, tuple[tuple[int, ...], Any]] = {
        "ids": ((), plan.ids.dtype), "errors": ((), np.dtype(object)), "texts": ((), np.dtype(object)),
        "tokens/ids": ((T,), np.int64), "tokens/strings": ((T,), np.dtype(object)),
        "tokens/mask": ((T,), np.bool_), "tokens/special": ((T,), np.bool_)}
    if rows.labels is not None:
        columns["labels"] = ((), np.int64)
    if kind == "class":
        columns.update({"targets": ((), np.int64), "predictions": ((), np.int64), "scores": ((), np.float32)})
    if kind == "continuation":
        columns.update({"outputs/ids": ((W,), np.int64), "outputs/strings": ((W,), np.dtype(object))})
    for spec in plan.specs:
        columns[f"maps/{spec.name}"] = ((T,), np.dtype(plan.dtype))
        if kind == "continuation":
            columns[f"matrices/{spec.name}"] = ((W, T), np.dtype(plan.dtype))
    meta = {"settings": settings, "layers": {}, "classes": None, "skipped_files": [], "runs": [],
            "text": {"kind": kind, "max_length": T, "max_output": W if kind == "continuation" else 0,
                     "tokenizer": settings["tokenizer"]["name"] or settings["tokenizer"]["class"]}}
    create_store(out, meta, columns, len(plan.dataset), plan.batch_size, map_codecs=codecs(plan.compressor))
    return rows.labels is not None, kind == "class", {}, []


def _pad(values: np.ndarray, shape: tuple[int, ...], fill: Any) -> np.ndarray:
    """``values`` ``(k, ...)`` in the leading corner of a ``(k, *shape)`` array of ``fill``."""
    full = np.full((len(values), *shape), fill, dtype=values.dtype)
    full[(slice(None), *(slice(0, n) for n in values.shape[1:]))] = values
    return full


def _strings(rows: list[list[str]], width: int) -> np.ndarray:
    full = np.full((len(rows), width), "", dtype=object)
    for i, row in enumerate(rows):
        full[i, :len(row)] = row
    return full


def text_columns(plan: Plan, setup: TextSetup, batch: X.TextRows) -> dict[str, np.ndarray]:
    """Every column's rows of ``batch``; unreadable rows hold the fill values."""
    start, ok = batch.start, batch.readable
    T, W = setup.max_length, setup.max_output
    texts = np.full(batch.size, "", dtype=object)
    texts[ok] = batch.texts
    columns: dict[str, np.ndarray] = {"ids": plan.ids[start:start + batch.size],
                                      "errors": np.array(batch.errors, dtype=object), "texts": texts}
    if plan.has_labels:
        columns["labels"] = batch.labels if batch.labels is not None else np.full(batch.size, -1, np.int64)
    if batch.ids is None:
        return columns
    target = _target(plan, np.arange(start, start + batch.size)[ok],
                     None if batch.labels is None else batch.labels[ok], batch.outputs)
    first = None
    for spec in plan.specs:
        result = _explain(plan, setup, spec, batch.ids, batch.mask, target)
        if first is None:
            first = result
            if result.meta.get("kind") == "continuation" and target is None:  # the greedy continuation, once
                from attribkit.text.targets import Continuation

                target = Continuation(result.meta["continuation"])
        rows = (start, start + batch.size - 1)
        columns[f"maps/{spec.name}"] = spread(_pad(stored_maps(result.values, plan.dtype, spec.name, rows), (T,), 0),
                                              ok, np.nan)
        if setup.kind == "continuation":
            matrix = stored_maps(result.matrix, plan.dtype, spec.name, rows)
            columns[f"matrices/{spec.name}"] = spread(_pad(matrix, (W, T), 0), ok, np.nan)
    ids = np.where(batch.mask.numpy(), batch.ids.numpy(), -1)
    columns["tokens/ids"] = spread(_pad(ids, (T,), -1), ok, -1)
    columns["tokens/strings"] = spread(_strings(first.tokens, T), ok, "")
    columns["tokens/mask"] = spread(_pad(np.asarray(first.mask, dtype=bool), (T,), False), ok, False)
    columns["tokens/special"] = spread(_pad(np.asarray(first.special, dtype=bool), (T,), False), ok, False)
    if setup.kind == "class":
        columns["targets"] = spread(np.asarray(first.target, dtype=np.int64), ok, -1)
        classes, scores = _predictions(plan, setup, batch)
        columns["predictions"], columns["scores"] = spread(classes, ok, -1), spread(scores, ok, np.nan)
    if setup.kind == "continuation":
        outputs = first.meta["continuation"]
        out_ids = np.full((len(outputs), W), -1, dtype=np.int64)
        for i, row in enumerate(outputs):
            out_ids[i, :len(row)] = row
        columns["outputs/ids"] = spread(out_ids, ok, -1)
        columns["outputs/strings"] = spread(_strings(first.output_tokens, W), ok, "")
    return columns


def _predictions(plan: Plan, setup: TextSetup, batch: X.TextRows) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's top class and its score per readable row (one forward)."""
    from attribkit.text.model import TextModel
    from attribkit.text.targets import read_logits
    from attribkit.torch.guard import model_guard

    text_model = TextModel(plan.model, setup.options.get("embedding"))
    with model_guard(plan.model, exclusive=False), torch.no_grad():
        logits = read_logits(text_model(batch.ids.to(plan.device), batch.mask.to(plan.device))).float()
    top = logits.max(dim=1)
    return top.indices.cpu().numpy().astype(np.int64), top.values.cpu().numpy().astype(np.float32)
