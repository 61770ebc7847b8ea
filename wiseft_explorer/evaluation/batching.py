"""Batched inference: logits of a preprocessed image tensor, with CPU batches spread over worker threads."""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

from ..core.models import autocast

POOL_MIN_IMAGES = 256
MIN_CHUNK = 64
_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _single_thread_worker(ready: threading.Barrier) -> None:
    # torch initialises a thread's OpenMP count from its process-wide default on first use; do that first, or the
    # lazy initialisation would later undo the 1 set here. set_num_threads also changes that default: the pool's
    # creator restores it once every worker has passed this point.
    torch.get_num_threads()
    torch.set_num_threads(1)
    ready.wait(30)


def worker_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of single-threaded inference workers (shared by every caller, so never oversubscribed)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != workers:
            if _pool is not None:
                _pool[1].shutdown(wait=False)
            saved = torch.get_num_threads()
            ready = threading.Barrier(workers + 1)
            pool = ThreadPoolExecutor(workers, thread_name_prefix="wiseft-batch", initializer=_single_thread_worker,
                                      initargs=(ready,))
            for _ in range(workers):  # start every worker now, each setting its thread count once
                pool.submit(int)
            ready.wait(30)
            torch.set_num_threads(saved)  # the workers' call also changed the default for new threads: undo that
            _pool = (workers, pool)
        return _pool[1]


def cpu_workers(device: torch.device | str, n_images: int, min_images: int = POOL_MIN_IMAGES) -> int:
    """How many batch workers to use: torch's thread count on CPU for at least `min_images` images, else 1."""
    # Below that every forward pass is mostly fixed per-call cost: 16 demo images took 45 ms in the pool and
    # 12-16 ms on the calling thread, 128 took 85 ms and 46-56 ms; from 256 on the pool is as fast or faster.
    if torch.device(device).type != "cpu" or n_images < min_images:
        return 1
    return max(1, torch.get_num_threads())


def _forward(model: nn.Module, batch: torch.Tensor, device: torch.device | str, precision: str) -> torch.Tensor:
    # inference_mode and autocast are thread-local, so every worker enters them itself.
    with torch.inference_mode(), autocast(device, precision):
        batch = batch.to(device, non_blocking=True)
        if torch.device(device).type == "cpu" and batch.dim() == 4:
            # oneDNN convolves NHWC without reordering activations at every layer: ~1.4x the images/s of
            # the demo's ResNet on CPU (docs/benchmarks.md); ViTs are unaffected. Equal up to float rounding.
            batch = batch.contiguous(memory_format=torch.channels_last)
        return model(batch).float().cpu()


def predict_logits(model: nn.Module, images: torch.Tensor, device: torch.device | str, precision: str = "fp32",
                   batch_size: int = 256, min_pool: int = POOL_MIN_IMAGES) -> torch.Tensor:
    """Logits (N, C) of preprocessed images, batched, on the model's device (or any module's outputs: an image
    tower's features, a head's logits of features, computed in the same chunks and threads).

    On CPU the batches go to one single-threaded worker per core instead of splitting every op over the cores:
    small ops split in two wait for the slower half, so any other load on the machine (the Streamlit server, a
    browser) stalls both; independent workers keep going (docs/benchmarks.md has the measurements).
    """
    workers = cpu_workers(device, len(images), min_pool)
    if workers == 1:
        return torch.cat([_forward(model, images[i:i + batch_size], device, precision)
                          for i in range(0, len(images), batch_size)])
    # Four chunks per worker or more, so a worker that falls behind does not hold up the end of the set (chunks of
    # 88 and 175 demo images ran at the same speed, 350 was 10% slower when the machine was quiet).
    size = max(min(MIN_CHUNK, math.ceil(len(images) / workers)), min(batch_size, math.ceil(len(images) / (4 * workers))))
    chunks = [images[i:i + size] for i in range(0, len(images), size)]
    pool = worker_pool(workers)
    return torch.cat(list(pool.map(lambda chunk: _forward(model, chunk, device, precision), chunks)))

