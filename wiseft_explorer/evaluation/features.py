"""Features once: when every theta_alpha shares its image tower, each image goes through it once, then every alpha
(and the output-space ensemble) is a small matrix product with that alpha's head.

Detected from the weights (WeightSpace.shared_tower), never from a flag: a linear-classifier endpoint, a probe,
LP-FT's first stage. The features are kept in the feature cache (store.features), keyed on the tower's digest, the
set and the preprocessing, so that another head over the same data sweeps without a forward pass. The tower and
the heads run through predict_logits exactly as the whole classifier does (same chunks, same threads, the head in
fp32), so the predictions are those of the full forward pass, image for image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..core.models import FeatureHead, ImageClassifier, Tower
from ..data.stream import to_device
from ..store.cache import DiskCache
from ..store.features import SetFeatures
from .batching import predict_logits
from .runtime import ExperimentRuntime
from .stream_state import SetStream


@dataclass
class FeatureJob:
    """The tower, the head at every alpha of a stream, and each streamed set's feature blocks (by set number)."""

    tower: Tower
    heads: dict[float, FeatureHead]
    stores: list[SetFeatures]
    forwards: int = 0  # images that went through the tower in this stream

    def logits(self, features: torch.Tensor, alpha: float, device: torch.device, precision: str,
               batch_size: int) -> torch.Tensor:
        """Raw logits of a batch's features at `alpha` (as the classifier at alpha computes them)."""
        return predict_logits(self.heads[alpha], features, device, precision, batch_size, min_pool=1)

    def features(self, images: torch.Tensor, device: torch.device, precision: str, batch_size: int) -> torch.Tensor:
        """A batch's features, through the tower as the classifier's forward runs it."""
        self.forwards += len(images)
        return predict_logits(self.tower, images, device, precision, batch_size, min_pool=1)


def tower_identity(runtime: ExperimentRuntime, name: str) -> dict[str, str]:
    """What one set's features depend on: the tower's weights, the set's images, the transform and precision."""
    exp = runtime.experiment
    transform = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(runtime.preprocess))  # no memory addresses in keys
    return {"tower": runtime.tower_digest, "model": exp.zeroshot.name, "set": runtime.set_fingerprint(name),
            "preprocess": transform, "precision": exp.precision}


def feature_job(runtime: ExperimentRuntime, needed: Mapping[str, Sequence[float]], model: ImageClassifier,
                cache: DiskCache) -> FeatureJob | None:
    """The features-once plan of a stream of these sets, or None when the endpoints' towers differ."""
    space = runtime.space
    if not space.shared_tower:
        return None
    alphas = sorted({float(a) for values in needed.values() for a in values})
    dim = model.head.in_features
    stores = [SetFeatures(cache, tower_identity(runtime, name), len(runtime.eval_set(name)), dim) for name in needed]
    return FeatureJob(Tower(model), {a: FeatureHead(*space.head_at(a)) for a in alphas}, stores)


def global_positions(stream: SetStream, positions: torch.Tensor) -> torch.Tensor:
    """Fair-order positions of a stream's rows (a distributed stream holds only its part of the fair order)."""
    return positions if stream.positions is None else torch.from_numpy(stream.positions)[positions]


def cached_batch(job: FeatureJob, number: int, stream: SetStream, items: Sequence[tuple[int, int, int]]) -> dict | None:
    """A planned batch served from the feature cache (no decoding, no forward), or None if a block is missing."""
    rows = _rows(items)
    fair = global_positions(stream, rows)
    found = job.stores[number].read(fair)
    if found is None:
        return None
    features, kept, failed = found
    row_of = dict(zip(fair.tolist(), rows.tolist(), strict=True))
    return {"set": number, "images": None, "features": features, "cached": True,
            "positions": torch.tensor([row_of[p] for p in kept], dtype=torch.long),
            "failed": [(row_of[p], why) for p, why in failed]}


def feature_batches(job: FeatureJob, items: list[list[tuple[int, int, int]]], streams: list[SetStream],
                    make_loader: Callable[[list], Iterable[dict]], decode: Callable[[list], dict]) -> Iterator[dict]:
    """The plan's batches in order: those whose features are all cached from the cache, the others through
    `make_loader(items)` (decoded in its workers as usual; made only if some batch needs decoding)."""
    covered = [job.stores[batch[0][0]].has(global_positions(streams[batch[0][0]], _rows(batch))) for batch in items]
    to_decode = [batch for batch, hit in zip(items, covered, strict=True) if not hit]
    decoded = iter(make_loader(to_decode)) if to_decode else iter(())
    for batch, hit in zip(items, covered, strict=True):
        if not hit:
            yield next(decoded)
            continue
        served = cached_batch(job, batch[0][0], streams[batch[0][0]], batch)
        yield served if served is not None else decode(batch)  # a block found unusable since: decode it here


def _rows(batch: Sequence[tuple[int, int, int]]) -> torch.Tensor:
    return torch.tensor([position for _, position, _ in batch], dtype=torch.long)


def prepare(job: FeatureJob, group: list[tuple[SetStream, dict]], device: torch.device, precision: str,
            batch_size: int) -> list[tuple[SetStream, torch.Tensor, torch.Tensor]]:
    """Each batch's features (read, or computed now and given to the feature cache) with its stream and rows."""
    ready = []
    for stream, batch in group:
        if not batch.get("cached"):
            images = batch["images"]
            batch["features"] = None if images is None else job.features(to_device(images, device), device,
                                                                         precision, batch_size)
            failed = [(int(global_positions(stream, torch.tensor([p]))[0]), why) for p, why in batch["failed"]]
            job.stores[batch["set"]].fill(global_positions(stream, batch["positions"]), batch["features"], failed)
        if batch["features"] is not None:
            ready.append((stream, batch["features"], batch["positions"]))
    return ready


def stored_features(runtime: ExperimentRuntime, name: str, index: int) -> torch.Tensor | None:
    """(1, D) features of image `index` of a set from the feature cache (a shared tower's), else None."""
    if not runtime.space.shared_tower:
        return None
    ev = runtime.eval_set(name)
    store = SetFeatures(DiskCache(runtime.experiment.cache_dir), tower_identity(runtime, name), len(ev),
                        runtime.models.zeroshot.head.in_features)
    position = torch.from_numpy(np.flatnonzero(ev.order == index))
    found = store.read(position) if store.has(position) else None
    return None if found is None else found[0]
