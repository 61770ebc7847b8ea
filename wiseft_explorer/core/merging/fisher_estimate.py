"""The diagonal Fisher of a classifier, as the paper's src/models/fisher.py computes it.

For each image alone (batch size 1), in train mode: a label is sampled from the model's own softmax, the
cross-entropy to it is back-propagated, and the squared gradients are summed; each parameter's sum is divided by
the number of images that gave it a gradient. Parameters that never got one have no Fisher (the merge uses ones).
The sampling is seeded here (the paper's is not), so a Fisher is reproducible and can be cached. One difference:
BatchNorm layers (ModifiedResNet towers) use their running statistics, where the paper's train mode would
normalise each single image by its own statistics (undefined on a 1×1 map; the paper's ViTs have no BatchNorm).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .base import Flat, TensorSlice

FisherProgress = Callable[[int], None]  # called with the number of images done


def diagonal_fisher(model: nn.Module, images: Iterable[torch.Tensor], seed: int = 0,
                    progress: FisherProgress | None = None) -> dict[str, torch.Tensor]:
    """Mean squared gradient per parameter over `images` (each (3, H, W) or (1, 3, H, W)), on a copy of `model`."""
    work = copy.deepcopy(model).train().requires_grad_(True)  # the paper's model.train(); the caller's is untouched
    for module in work.modules():  # ...but BatchNorm keeps its running statistics: batch-of-1 ones are noise
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    device = next(work.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    params = dict(work.named_parameters())
    sums = {name: torch.zeros_like(p) for name, p in params.items()}
    counts = dict.fromkeys(params, 0)
    with torch.enable_grad():
        for done, image in enumerate(images, 1):
            logits = work(image.reshape(1, *image.shape[-3:]).to(device))
            target = torch.multinomial(F.softmax(logits.detach().float(), dim=-1), 1, generator=generator).view(-1)
            work.zero_grad(set_to_none=True)
            F.cross_entropy(logits.float(), target).backward()
            for name, p in params.items():
                if p.grad is not None:
                    sums[name] += p.grad.detach() ** 2
                    counts[name] += 1
            if progress is not None:
                progress(done)
    return {name: sums[name] / counts[name] for name in params if counts[name]}


def fisher_flat(fisher: dict[str, torch.Tensor], layout: list[TensorSlice], like: Flat) -> Flat:
    """A Fisher as flat buffers with the weights' layout: ones where it has no entry (the paper's default)."""
    flat = {dtype: torch.ones_like(buffer) for dtype, buffer in like.items()}
    for sl in layout:
        if sl.name in fisher:
            flat[sl.dtype][sl.start:sl.stop] = fisher[sl.name].reshape(-1).to(sl.dtype)
    return flat
