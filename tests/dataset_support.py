"""Small datasets for the explain_dataset tests (also imported by their subprocesses)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import torch

from attribkit.datasets.folder import Unreadable
from attribkit.testing import TinyCNN

SIZE = 16
CLASSES = 5


def small_model() -> torch.nn.Module:
    """The seeded TinyCNN every test process builds alike."""
    torch.manual_seed(0)
    return TinyCNN(classes=CLASSES).eval()


def image(index: int) -> torch.Tensor:
    """Item ``index``'s image: a fixed function of the index."""
    gen = torch.Generator().manual_seed(1000 + index)
    return torch.randn(3, SIZE, SIZE, generator=gen)


def stacked(n: int) -> torch.Tensor:
    return torch.stack([image(i) for i in range(n)])


class Numbered(torch.utils.data.Dataset):
    """``n`` items ``(image, label[, mask])``; items in ``unreadable`` are :class:`Unreadable`.

    With the environment variable ``KILL_AT=k`` the process SIGKILLs itself when
    item ``k`` is loaded (a crash in the middle of a run). With ``WAIT_AT=k`` and
    ``WAIT_FOR=PATH``, loading item ``k`` creates ``PATH.waiting`` and waits (at most
    60 s) until ``PATH`` exists (a run held in the middle, for a second process). With
    ``CHANGE_ITEM=k``, item ``k``'s image is another (the data changed)."""

    def __init__(self, n: int = 10, *, labels: bool = True, masks: bool = False,
                 unreadable: tuple[int, ...] = ()) -> None:
        self.n, self.with_labels, self.masks, self.unreadable = n, labels, masks, unreadable

    def __len__(self) -> int:
        return self.n

    def label(self, index: int) -> int:
        return (index * 3) % CLASSES

    def mask(self, index: int) -> torch.Tensor:
        mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
        row = index % (SIZE - 4)
        mask[row:row + 4, 2:6] = True
        return mask

    def __getitem__(self, index: int):
        if os.environ.get("KILL_AT") == str(index):
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get("WAIT_AT") == str(index):
            wait_for(Path(os.environ["WAIT_FOR"]))
        if index in self.unreadable:
            return Unreadable(f"item {index} is damaged")
        if os.environ.get("CHANGE_ITEM") == str(index):  # the data changed since it was stored
            return image(index) + 1, self.label(index)
        if not self.with_labels:
            return image(index)
        if self.masks:
            return image(index), self.label(index), self.mask(index)
        return image(index), self.label(index)


def wait_for(path: Path, limit: float = 60.0) -> None:
    """Say ``PATH.waiting``, then wait until ``path`` exists."""
    path.with_name(path.name + ".waiting").touch()
    deadline = time.monotonic() + limit
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear in {limit} s")
        time.sleep(0.02)
