"""The streaming evaluation engine: every set read once, every needed alpha evaluated on each batch, resumable.

For each batch the loader delivers, theta_alpha is written into the working model (one flat-buffer lerp) for every
alpha still needed and the batch is classified; so 21 alphas cost one decode pass, not 21. Per-image predictions
are kept compactly in the sets' fair order (`stream_state`), so that a stream saves and resumes from a prefix.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.interpolate import WeightSpace, Working
from ..data.class_views import ClassView
from ..data.preset_sets import unreadable_message
from ..data.sampling import shard_plan
from ..data.sets import EvalSet, set_logits
from ..data.stream import SweepImages, batch_plan, make_loader, plan_items, release_memory, to_device
from ..experiment.spec import ExperimentError
from .batching import predict_logits
from .features import FeatureJob, feature_batches, prepare
from .stream_state import SetStream, StateStore

FIRST_BATCH = 16  # images of every set in the first round: every alpha has an estimate after it


class StreamStopped(RuntimeError):
    """The process is exiting: a stream stops after its current batches (its state is saved for a resume)."""


_stopping = threading.Event()
_running = threading.Condition()
_active = [0]  # streams running in this process


@atexit.register
def _stop_streams(timeout: float = 15.0) -> None:
    """At exit, let running streams (e.g. the app's background sweep) stop at a batch boundary, saving their state.

    Python kills daemon threads at exit wherever they are: inside a forward pass with loader workers attached, the
    process aborted ("terminate called without an active exception", exit status 134) instead of exiting.
    """
    _stopping.set()
    with _running:
        _running.wait_for(lambda: _active[0] == 0, timeout)


@dataclass(frozen=True)
class StreamProgress:
    """How far a streaming evaluation has got: images processed out of the total, speed and time left."""

    done: int
    total: int
    seconds: float  # since this run started (a resumed run counts from its restart)
    processed_now: int  # images processed by this run (for its speed)
    first_round: bool  # every set has had its first batch: every alpha has an estimate

    @property
    def rate(self) -> float:
        """Images per second in this run."""
        return self.processed_now / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta_seconds(self) -> float | None:
        """Estimated seconds left, or None before the speed is known."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None

    def line(self) -> str:
        """'12,800 of 50,000 images (26%), about 3 min left'."""
        pct = 100 * self.done / self.total if self.total else 100.0
        text = f"{self.done:,} of {self.total:,} images ({pct:.0f}%)"
        eta = self.eta_seconds
        if eta is not None and self.done < self.total:
            text += f", about {_duration(eta)} left"
        if self.done > self.processed_now:
            text += f" (resumed: {self.done - self.processed_now:,} were done before a restart)"
        return text


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


ProgressHook = Callable[[StreamProgress, dict[str, SetStream]], None]


@dataclass
class StreamJob:
    """What to stream: sets (by name), the alphas each one still needs, and how to run the model."""

    space: WeightSpace
    working: Working
    sets: dict[str, EvalSet]
    alphas: dict[str, list[float]]
    preprocess: Callable
    num_classes: int
    device: torch.device
    precision: str = "fp32"
    batch_size: int = 256
    workers: int = 0
    views: dict[str, tuple[ClassView, ...]] = field(default_factory=dict)  # set -> shifts' views of its logits
    features: FeatureJob | None = None  # the towers are shared: features once, then a head per alpha


def refuse_unreadable(stream: SetStream, failed: list[tuple[int, str]]) -> None:
    """A set that must read every file (a preset's, without skip_unreadable) stops at the first it cannot read."""
    if failed and not stream.ev.skip_unreadable:
        position, reason = failed[0]
        paths = stream.ev.paths
        where = paths[int(stream.indices[position])] if paths is not None else f"image #{position}"
        raise ExperimentError(unreadable_message(stream.ev.name, where, reason, len(failed)))


def stream_evaluate(job: StreamJob, store: StateStore | None = None, on_batch: ProgressHook | None = None,
                    max_images: int | None = None, counter=None,
                    shard: tuple[int, int] | None = None) -> dict[str, SetStream]:
    """Evaluate every set at its alphas in one pass over its images; resumes from `store`'s saved state.

    `max_images` stops each set after that many images of its fair order (a fair sample). `on_batch` is called
    after every batch with the progress and the streams (read them there: they change as the stream goes on).
    `shard=(rank, world)` streams only that process's part of the batch plan (sampling.shard_plan); the progress
    then counts that part.
    """
    evs = list(job.sets.values())
    sizes = [min(len(ev), max_images) if max_images else len(ev) for ev in evs]
    plan = batch_plan(sizes, job.batch_size, FIRST_BATCH)
    first_round = sum(1 for size in sizes if size)
    positions: Sequence[np.ndarray | None] = [None] * len(evs)  # None: the whole set
    if shard is not None:
        plan, mine, first_round = shard_plan(plan, len(evs), *shard)
        sizes, positions = [len(p) for p in mine], mine
    streams = {name: SetStream.empty(ev, job.alphas[name], job.num_classes, part, job.views.get(name, ()))
               for (name, ev), part in zip(job.sets.items(), positions, strict=True)}
    start_batch = store.restore(streams) if store is not None else 0
    total, resumed = sum(sizes), sum(s.done for s in streams.values())
    names = list(streams)
    # Generated sets are already in memory: loading them in worker processes would only add start-up time.
    workers = job.workers if any(not ev.in_memory for ev in evs) else 0
    dataset = SweepImages(evs, [job.preprocess] * len(evs), counter)
    items = plan_items(plan[start_batch:], [s.indices for s in streams.values()])
    if job.features is None:
        loader: Iterable[dict] = make_loader(dataset, items, workers, job.device)
    else:  # batches whose features are cached are neither decoded nor forwarded
        loader = feature_batches(job.features, items, list(streams.values()),
                                 lambda batches: make_loader(dataset, batches, workers, job.device),
                                 dataset.__getitems__)
    started, saved_at, done = time.perf_counter(), time.perf_counter(), resumed
    batch_number, group = start_batch, []
    with _running:
        _active[0] += 1
    try:
        for batch in loader:
            if _stopping.is_set():
                raise StreamStopped("the process is exiting; the sweep resumes from its saved state next time")
            group.append(batch)
            refuse_unreadable(streams[names[batch["set"]]], batch["failed"])
            # Batches are classified in groups of about batch_size images (the first round as one group), alpha by
            # alpha, so that theta_alpha is written once per group instead of once per batch: the first round of
            # the demo's 7 sets needs 21 lerps instead of 147 (3.4 ms each).
            ahead = batch_number + len(group)
            if (sum(len(b["positions"]) for b in group) < job.batch_size and ahead != first_round
                    and ahead != len(plan)):
                continue
            _classify(job, [(streams[names[b["set"]]], b) for b in group])
            for batch in group:
                stream = streams[names[batch["set"]]]
                for position, reason in batch["failed"]:
                    stream.failed[position] = reason
                count = len(batch["positions"]) + len(batch["failed"])
                stream.done += count
                done += count
                batch_number += 1
                if store is not None and time.perf_counter() - saved_at >= store.every and done < total:
                    store.save(streams, batch_number)
                    saved_at = time.perf_counter()
                if on_batch is not None:
                    on_batch(StreamProgress(done, total, time.perf_counter() - started, done - resumed,
                                            batch_number >= first_round), streams)
            group.clear()
            release_memory()
        if store is not None and store.keep_final:
            store.save(streams, batch_number)
    except BaseException:
        # Keep the work done so far (a Ctrl-C, a failed batch): the state only ever holds whole batches.
        if store is not None and batch_number > start_batch and done < total:
            store.save(streams, batch_number)
        raise
    finally:
        del loader  # its workers are shut down here, not by the interpreter's exit
        with _running:
            _active[0] -= 1
            _running.notify_all()
    return streams


def _classify(job: StreamJob, group: list[tuple[SetStream, dict]]) -> None:
    """Predictions of a group of batches at every alpha their sets need, written into the streams."""
    features = job.features
    if features is not None:  # each image through the tower once: the alphas differ in their heads only
        ready = prepare(features, group, job.device, job.precision, job.batch_size)
    else:
        ready = [(stream, to_device(batch["images"], job.device), batch["positions"])  # once per batch
                 for stream, batch in group if batch["images"] is not None]
    ends: dict[tuple[int, float], torch.Tensor] = {}  # (batch, endpoint alpha) -> raw logits, for the ensemble
    joined: dict[tuple[int, ...], torch.Tensor] = {}  # the group's batches that need an alpha, as one tensor
    for alpha in sorted({a for stream, _, _ in ready for a in stream.alphas}):
        logits_of = _logits_at(job, alpha)
        needing = [k for k, (stream, _, _) in enumerate(ready) if alpha in stream.alphas]
        for k, raw in zip(needing, _joined_logits(logits_of, [ready[k][1] for k in needing], joined, tuple(needing)),
                          strict=True):
            stream, _, positions = ready[k]
            _record(stream, stream.alphas.index(alpha), raw, positions)
            if stream.ensemble and alpha in (0.0, 1.0):
                ends[k, alpha] = raw
    for k, (stream, _, positions) in enumerate(ready):
        if stream.ensemble:
            output_ensemble(stream, positions, ends[k, 0.0], ends[k, 1.0])


def _joined_logits(logits_of: Callable[[torch.Tensor], torch.Tensor], batches: list[torch.Tensor],
                   joined: dict[tuple[int, ...], torch.Tensor], key: tuple[int, ...]) -> list[torch.Tensor]:
    """Each batch's logits from one call on the batches put together (same image shape), else one call per batch.

    The first round is 16 images of every set: split over the workers, 8-image chunks ran the demo's ResNet at
    a third of the speed of 64-image ones, and 147 calls (7 sets x 21 alphas) became 21."""
    if len(batches) == 1 or len({tuple(b.shape[1:]) for b in batches}) > 1:
        return [logits_of(batch) for batch in batches]
    if key not in joined:
        joined[key] = torch.cat(batches)
    return list(logits_of(joined[key]).split([len(b) for b in batches]))


def _logits_at(job: StreamJob, alpha: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """Raw logits at alpha of a batch's images (the whole classifier), or of its features (the head at alpha)."""
    features = job.features
    if features is not None:
        return lambda batch: features.logits(batch, alpha, job.device, job.precision, job.batch_size)
    model = job.space.interpolate_into(job.working, alpha)
    # Single-threaded pool workers even for the small first batches: on 2 shared cores, ops split over two
    # threads ran 32 demo images at 195 images/s, the pool at 1,860 (docs/benchmarks.md).
    return lambda batch: predict_logits(model, batch, job.device, job.precision, job.batch_size, min_pool=1)


def _record(stream: SetStream, column: int, raw: torch.Tensor, positions: torch.Tensor) -> None:
    """One batch at one alpha, from its raw logits: the predicted class (and probabilities, when kept)."""
    logits = set_logits(raw, stream.ev)
    stream.pred[positions, column] = logits.argmax(dim=-1).to(stream.pred.dtype)
    for k, view in enumerate(stream.views):  # the same logits as a shift scores them: no second pass
        stream.pred[positions, stream.view_column(k, column)] = view.logits(raw).argmax(dim=-1).to(stream.pred.dtype)
    if stream.probs is not None:
        stream.probs[column, positions] = logits.softmax(dim=-1).to(torch.float16)


def output_ensemble(stream: SetStream, positions: torch.Tensor, logits0: torch.Tensor, logits1: torch.Tensor) -> None:
    """The output-space ensemble's prediction at every alpha: argmax of (1 - alpha) logits_0 + alpha logits_1.

    The raw logits are mixed, then scored as the set scores (restricted or grouped): masking first would mix -inf.
    """
    offset = len(stream.alphas)
    for column, alpha in enumerate(stream.alphas):
        mixed = torch.lerp(logits0.float(), logits1.float(), alpha)
        stream.pred[positions, offset + column] = set_logits(mixed, stream.ev).argmax(dim=-1).to(stream.pred.dtype)
