"""Streaming images: sets read in batches through torch's DataLoader, decoded and preprocessed in worker processes.

Nothing here holds a folder set whole: a batch is decoded when the loader asks for it and dropped after use, so
memory does not grow with the set. Workers start from a forkserver (not fork): the Streamlit server is
multi-threaded, and forking a process whose OpenMP or server threads are running can deadlock the child.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .sets import EvalSet, load_batch

MAX_DEFAULT_WORKERS = 8
# One batch item: (set number, position in that set's fair order, index into the set).
Item = tuple[int, int, int]


def default_workers() -> int:
    """Decoding workers when the experiment does not say: one core is left to the model, at most 8.

    Under torchrun the node's cores are shared by its LOCAL_WORLD_SIZE processes: each gets its share, less the
    core its model runs on (none when that leaves nothing: the process decodes its own batches).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if local > 1:
        return max(0, min(MAX_DEFAULT_WORKERS, cores // local - 1))
    return max(1, min(MAX_DEFAULT_WORKERS, cores - 1))


def worker_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context for loader workers: a forkserver that has torch and PIL imported already."""
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    # Workers fork from the server, so each one starts in milliseconds instead of importing torch again; open_clip
    # too, since unpickling its image transform imports it (1.3 s per loader otherwise).
    ctx.set_forkserver_preload([__name__, "open_clip"])
    return ctx


def _libc_trim() -> Callable[[], None]:
    """glibc's malloc_trim(0), or a no-op elsewhere."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    trim = getattr(libc, "malloc_trim", None)
    return (lambda: trim(0)) if trim is not None else (lambda: None)


# Decoded JPEGs and preprocessed batches (150 MB at 256 x 224 px) are freed after use, but glibc keeps the freed
# pages: RSS then drifts up by hundreds of MB over a long sweep. Trimming after each batch gives them back (the
# benchmark's 20,000-image sweep grew by 34 MB instead of 160-470 MB), at no measurable cost.
release_memory = _libc_trim()


def _exit_with_main(main_pid: int, worker_id: int) -> None:
    """A loader worker's init: leave when the process that owns the loader is gone.

    Workers are children of the forkserver, not of the sweep's process, so torch's check of the parent's pid never
    fires, and each worker holds the pipe that keeps the forkserver alive: after a SIGKILL of the app's server, the
    forkserver and its workers (1.5 GB) stayed for good. This watchdog ends them within a second.
    """
    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(main_pid, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:  # the pid was reused by another user's process: ours is gone
                os._exit(0)

    threading.Thread(target=watch, name="wiseft-main-watchdog", daemon=True).start()


class DecodeCounter:
    """How many images were loaded (decoded or cut from memory), counted across worker processes."""

    def __init__(self, ctx: multiprocessing.context.BaseContext | None = None) -> None:
        self._value = (ctx or worker_context()).Value("q", 0)

    def add(self, n: int) -> None:
        """Count n more loaded images."""
        with self._value.get_lock():
            self._value.value += n

    @property
    def count(self) -> int:
        """Images loaded so far."""
        return int(self._value.value)


class SweepImages(Dataset):
    """Batches of the sweep's sets: each batch is a list of Items of one set, loaded with that set's transform."""

    def __init__(self, sets: Sequence[EvalSet], preprocess: Sequence[Callable],
                 counter: DecodeCounter | None = None) -> None:
        self.sets, self.preprocess, self.counter = list(sets), list(preprocess), counter

    def __len__(self) -> int:
        return sum(len(ev) for ev in self.sets)

    def __getitem__(self, item: Item) -> dict[str, Any]:
        return self.__getitems__([item])

    def __getitems__(self, items: Sequence[Item]) -> dict[str, Any]:
        """One batch: {'set', 'images' (B,3,H,W) or None, 'positions' (B,) of the loaded ones, 'failed'}."""
        number = items[0][0]
        if any(item[0] != number for item in items):
            raise ValueError("a streamed batch must come from one set")
        position_of = {index: position for _, position, index in items}
        images, loaded, failed = load_batch(self.sets[number], [index for _, _, index in items],
                                            self.preprocess[number])
        if self.counter is not None:
            self.counter.add(len(items))
        release_memory()
        return {"set": number, "images": images,
                "positions": torch.tensor([position_of[i] for i in loaded], dtype=torch.long),
                "failed": [(position_of[i], reason) for i, reason in failed]}


class LabelledImages(Dataset):
    """(image, label) pairs of one set, one image per item (for training); an undecodable image gives None."""

    def __init__(self, ev: EvalSet, preprocess: Callable, counter: DecodeCounter | None = None) -> None:
        self.ev, self.preprocess, self.counter = ev, preprocess, counter

    def __len__(self) -> int:
        return len(self.ev)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        images, _, _ = load_batch(self.ev, [index], self.preprocess)
        if self.counter is not None:
            self.counter.add(1)
        return (images[0], self.ev.labels[index]) if images is not None else None  # None: the image did not load


def collate_loaded(items: list[tuple[torch.Tensor, torch.Tensor] | None]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Stack the images that loaded (a failed decode drops out of its batch); None when none did."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    return torch.stack([image for image, _ in kept]), torch.stack([label for _, label in kept])


def _as_is(batch: Any) -> Any:
    """The collate function: batches arrive whole from __getitems__ (module level, so workers can unpickle it)."""
    return batch


def batch_plan(sizes: Sequence[int], batch_size: int, first: int) -> list[tuple[int, int, int]]:
    """The order of work as (set, start, stop) slices of each set's fair order.

    First a small batch of every set, so that every set has an estimate early; then always a batch of the set that
    is least far along, so that all sets sharpen together and finish together. Deterministic in its inputs, so a
    resumed run replays the same batches.
    """
    done = [0] * len(sizes)
    plan = []
    for number, size in enumerate(sizes):
        if size:
            done[number] = min(first, batch_size, size)
            plan.append((number, 0, done[number]))
    while True:
        open_sets = [n for n, size in enumerate(sizes) if done[n] < size]
        if not open_sets:
            return plan
        number = min(open_sets, key=lambda n: (done[n] / sizes[n], n))
        stop = min(sizes[number], done[number] + batch_size)
        plan.append((number, done[number], stop))
        done[number] = stop


def plan_items(plan: Iterable[tuple[int, int, int]], orders: Sequence[np.ndarray]) -> list[list[Item]]:
    """The loader's batches: each slice of the plan as Items (set, position, index in the set).

    `orders[n]` gives the set index at each position of set n's stream (its fair order, or a process's part of it).
    """
    return [[(number, position, int(orders[number][position])) for position in range(start, stop)]
            for number, start, stop in plan]


def make_loader(dataset: Dataset, batches: list[list[Any]], workers: int, device: torch.device,
                collate: Callable[[Any], Any] = _as_is) -> DataLoader:
    """A DataLoader over given batches: workers decode ahead while the model runs; pinned memory on CUDA."""
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate,
                      pin_memory=device.type == "cuda", multiprocessing_context=worker_context() if workers else None,
                      prefetch_factor=2 if workers else None, worker_init_fn=worker_init() if workers else None)


def worker_init() -> Callable[[int], None]:
    """The init function every loader worker runs (ties its life to this process)."""
    return functools.partial(_exit_with_main, os.getpid())


def to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on the model's device (asynchronous from pinned memory), channels-last for convolutions."""
    images = images.to(device, non_blocking=True)
    # oneDNN and cuDNN convolve NHWC without reordering activations at every layer; ViTs are unaffected.
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images
