"""The benchmark tasks: one table, name -> ``"module:attr"``, loaded on first use.

Each task (:class:`~attribkit.bench.tasks.base.Task`) gives generated data whose
evidence is known and the small reference model trained on it reproducibly
(``attribkit bench --task NAME``; ``attribkit bench tasks`` lists them). A new
task is one module with a ``TASK`` and one line in :data:`TASKS`; the runner
names none of them. Importing this package imports no torch.
"""

from __future__ import annotations

import difflib
import importlib
from typing import TYPE_CHECKING, Any

from attribkit.errors import AttribkitError

if TYPE_CHECKING:
    from attribkit.bench.tasks.base import Task

#: every task by name: ``"module:attr"`` of its :class:`~attribkit.bench.tasks.base.Task`
TASKS: dict[str, str] = {
    "shapes": "attribkit.bench.tasks.shapes:TASK",
    "shapes-vit": "attribkit.bench.tasks.shapes_vit:TASK",
    "digits": "attribkit.bench.tasks.digits:TASK",
    "segmentation": "attribkit.bench.tasks.segmentation:TASK",
    "detection": "attribkit.bench.tasks.detection:TASK",
    "text": "attribkit.bench.tasks.text:TASK",
}
DEFAULT_TASK = "shapes"
#: the spellings from before ``--task``: ``(--model, --data)`` -> task
SPELLINGS: dict[tuple[str, str | None], str] = {
    ("synthetic", None): "shapes",
    ("synthetic-vit", None): "shapes-vit",
    ("synthetic", "digits"): "digits",
}


class UnknownTaskError(AttribkitError, LookupError):
    """A task name that :data:`TASKS` does not hold."""


def task_names() -> list[str]:
    """The names of every task, in the table's order."""
    return list(TASKS)


def get_task(name: str) -> Task:
    """The task called ``name`` (``_`` and ``-`` alike); an unknown name raises
    :class:`UnknownTaskError` naming the close matches and every task."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in TASKS:
        close = difflib.get_close_matches(key, TASKS, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTaskError(f"unknown benchmark task {name!r}{hint} (the tasks: {', '.join(TASKS)}; "
                               "`attribkit bench tasks` describes them)")
    module, _, attr = TASKS[key].partition(":")
    return getattr(importlib.import_module(module), attr)


def task_name(model: str | None = None, data: str | None = None) -> str | None:
    """The task an older spelling (``--model synthetic|synthetic-vit``, ``--data digits``)
    names, or None when ``model`` is a user's model."""
    return SPELLINGS.get((model or "synthetic", data))


def resolve_task(task: str | None = None, *, model: str | None = None, data: str | None = None,
                 weights: str | None = None) -> Task:
    """The task of a bench run: ``task`` by name, else the task an older spelling of
    ``model`` and ``data`` names, else the user's ``model`` on the folder ``data``
    (:class:`~attribkit.bench.tasks.folder.FolderTask`)."""
    if task is not None:
        if model is not None or data is not None:
            raise AttribkitError("--task brings its own model and data: give --task, or --model / --data")
        return get_task(task)
    name = task_name(model, data)
    if name is not None:
        return get_task(name)
    if model is None or model in {m for m, _ in SPELLINGS}:
        raise AttribkitError(f"--data {data}: the reference tasks bring their own data (--task "
                             f"{', '.join(TASKS)}); a folder of images goes with a model of yours (--model SPEC)")
    from attribkit.bench.tasks.folder import FolderTask

    return FolderTask(model, weights, data)


def task_rows() -> list[dict[str, Any]]:
    """One row per task for ``attribkit bench tasks``: name, evidence, the older spelling, description."""
    older = {name: " ".join(f"--model {m}" + (f" --data {d}" if d else "") for (m, d), n in SPELLINGS.items()
                            if n == name) for name in TASKS}
    return [{"name": name, "evidence": get_task(name).evidence, "also": older[name],
             "description": get_task(name).description} for name in TASKS]
