"""Processes of one run under ``torchrun``: ranks, the batches each one owns, and
the few messages they exchange.

``torchrun --nproc_per_node=N`` (on one node or several) starts N copies of the
same command and sets ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; :func:`joined` then starts ``torch.distributed`` (gloo when the
model is on the CPU, NCCL for CUDA tensors and gloo for CPU ones when it is on
a GPU) unless the caller already did. Without those variables, or with one
process, the run is a single process and nothing is initialised.

The batches still to compute are split by :func:`share_of`: rank ``r`` takes
every ``world``-th one from the ``r``-th, so each batch (each chunk of the
store) belongs to exactly one rank, no item is padded or repeated (as
``DistributedSampler`` would), and the ranks' loads differ by one batch at
most. Messages are small Python objects on CPU tensors, so they go through
gloo whatever the backend of the model's tensors.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class Processes:
    """This process's rank among ``world`` processes, and their messages."""

    def __init__(self, rank: int = 0, world: int = 1, group: Any = None) -> None:
        self.rank, self.world, self._group = rank, world, group

    @property
    def leader(self) -> bool:
        """Rank 0: creates the store, writes the metadata, shows progress and the summary."""
        return self.rank == 0

    def from_leader(self, value: Any) -> Any:
        """Rank 0's ``value``, on every rank. An exception from rank 0 is raised on
        every rank, so that all of them stop on a problem found before any work."""
        if self.world > 1:
            if isinstance(value, BaseException):
                value = _picklable(value)
            box = [value]
            torch.distributed.broadcast_object_list(box, src=0, group=self._group)
            value = box[0]
        if isinstance(value, BaseException):
            raise value
        return value

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value``, in rank order (waits for all of them)."""
        if self.world == 1:
            return [value]
        found: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(found, value, group=self._group)
        return found


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc)
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[Processes]:
    """The processes of this run (a single one outside ``torchrun``); a process group
    this starts is destroyed on the way out."""
    dist = torch.distributed
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not dist.is_available() or (world == 1 and not dist.is_initialized()):
        yield Processes()
        return
    started = not dist.is_initialized()
    if started:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    try:
        group = None if "gloo" in str(dist.get_backend()) else dist.new_group(backend="gloo")
        yield Processes(dist.get_rank(), dist.get_world_size(), group)
    finally:
        if started:
            dist.destroy_process_group()


def share_of(batches: Sequence[int], processes: Processes) -> list[int]:
    """The batches rank ``processes.rank`` computes: every ``world``-th, from the ``rank``-th."""
    return list(batches[processes.rank::processes.world])
