"""Zero-shot heads: class names x prompt templates -> a linear layer over normalised image features.

Building a head runs every class x template prompt through the text tower (80,000 prompts for ImageNet), so heads
are kept in the disk cache, keyed by the weights' identity, the class names and the templates (both in order).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import open_clip
import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from torch import nn

from ..store.cache import CacheWarning, DiskCache
from ..store.keys import cache_key, default_cache_dir

HeadProgress = Callable[[int, int], None]
"""progress(done_classes, total_classes), called after each chunk of classes while a head is built."""

# open_clip's batch of classes per text-tower forward. Chunks that are a multiple of it run the very same forwards
# as one call over all classes, so a chunked head is bit-identical to an unchunked one.
CLASSES_PER_BATCH = 10
_HEAD_LAYOUT = 1  # bump when the head's construction changes: old cached heads then miss
# A folder of their own inside the cache (as stored curves have), so sweep entries and their counts stay apart.
HEADS_FOLDER = "heads"


@torch.inference_mode(False)
def zero_shot_head(clip_model: nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[str],
                   device: torch.device | str = "cpu", progress: HeadProgress | None = None,
                   chunk_classes: int = CLASSES_PER_BATCH) -> nn.Linear:
    """Head whose rows are the normalised mean text embeddings of each class, times logit_scale.exp()."""
    if chunk_classes < 1:
        raise ValueError(f"chunk_classes must be at least 1, got {chunk_classes}")
    names, prompts = list(classnames), list(templates)
    chunks = []
    with torch.no_grad():
        for start in range(0, len(names), chunk_classes):
            chunk = names[start:start + chunk_classes]
            chunks.append(build_zero_shot_classifier(clip_model, tokenizer, chunk, prompts,
                                                     num_classes_per_batch=CLASSES_PER_BATCH, device=device))
            if progress is not None:
                progress(start + len(chunk), len(names))
        weights = torch.cat(chunks, dim=1)  # (D, C)
        scale = clip_model.logit_scale.exp().float()
        head = nn.Linear(weights.shape[0], weights.shape[1], bias=True)
        # The paper's head: logits = logit_scale * <normalised image feature, normalised class embedding>.
        head.weight.copy_((weights.T * scale).float())
        head.bias.zero_()
    return head.to(device)


def head_cache_key(identity: Mapping[str, str], classnames: Sequence[str], templates: Sequence[str],
                   device: torch.device | str = "cpu") -> str:
    """Cache key of a head: the weights' identity, class names and templates (in order), device type."""
    # Device type: GPU kernels round differently, and a cached head must equal the one built where it runs.
    # open_clip's version: it owns the tokenizers and the builder; torch's: its kernels compute the embeddings.
    return cache_key(kind="zeroshot-head", layout=_HEAD_LAYOUT, weights=dict(identity), classnames=list(classnames),
                     templates=list(templates), device=torch.device(device).type, open_clip=open_clip.__version__,
                     torch=torch.__version__)


def open_head_cache(cache_dir: str | Path | None = None) -> DiskCache | None:
    """The heads' DiskCache inside a cache folder (None: the default), or None with a CacheWarning if unusable."""
    root = Path(cache_dir or default_cache_dir()).expanduser() / HEADS_FOLDER
    try:
        return DiskCache(root)
    except OSError as exc:  # read-only or missing disk: heads are still built, just not kept
        warnings.warn(f"head cache {root} is unusable ({exc}); zero-shot heads will be built at every load",
                      CacheWarning, stacklevel=2)
        return None


@torch.inference_mode(False)
def cached_zero_shot_head(clip_model: nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[str],
                          identity: Mapping[str, str], cache: DiskCache | None, device: torch.device | str = "cpu",
                          progress: HeadProgress | None = None) -> nn.Linear:
    """`zero_shot_head` through the disk cache; `identity` must name the weights (text tower, tokenizer) uniquely."""
    if cache is None:
        return zero_shot_head(clip_model, tokenizer, classnames, templates, device, progress)
    key = head_cache_key(identity, classnames, templates, device)
    stored = cache.get(key)
    if stored is not None and _is_head(stored, len(classnames)):
        weight, bias = stored["weight"], stored["bias"]
        head = nn.Linear(weight.shape[1], weight.shape[0], bias=True)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias)
        return head.to(device)
    head = zero_shot_head(clip_model, tokenizer, classnames, templates, device, progress)
    try:
        cache.put(key, {"weight": head.weight, "bias": head.bias},
                  {"kind": "zeroshot-head", "classes": len(classnames), "templates": len(templates)})
    except OSError as exc:  # a full or read-only disk costs the next load a rebuild, not this one its head
        warnings.warn(f"could not store the zero-shot head in {cache.root}: {exc}", CacheWarning, stacklevel=2)
    return head


def _is_head(tensors: dict[str, torch.Tensor], num_classes: int) -> bool:
    """Whether a verified cache entry has the layout of a head for `num_classes` classes."""
    weight, bias = tensors.get("weight"), tensors.get("bias")
    return (weight is not None and bias is not None and weight.dtype == bias.dtype == torch.float32
            and weight.ndim == 2 and weight.shape[0] == num_classes and tuple(bias.shape) == (num_classes,))


def text_scores(clip_model: nn.Module, tokenizer, classnames: list[str], templates: list[str],
                features: torch.Tensor) -> torch.Tensor:
    """Zero-shot logits of normalised image features (B, D) against arbitrary class names -> (B, C)."""
    # Not cached: these are ad-hoc names typed on the Upload page, a handful of prompts each.
    head = zero_shot_head(clip_model, tokenizer, classnames, templates, features.device)
    with torch.no_grad():
        return head(features.float())
