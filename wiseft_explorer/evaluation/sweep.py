"""The alpha sweep: accuracy and per-image predictions for every alpha and set, streamed once and cached on disk."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..core.distributed import Group, provenance, provenance_line
from ..core.interpolate import Working
from ..data.sets import DataWarning, project_logits, restrict_logits
from ..results.curves import ALPHA_GRID, Curves, store_curves, stored_curves
from ..results.uncertainty import accuracy_intervals, endpoint_errors
from ..store.cache import DiskCache
from ..store.keys import cache_key
from .engine import FIRST_BATCH, StreamJob, StreamProgress, stream_evaluate
from .runtime import ExperimentRuntime
from .stream_state import SetStream, StateStore

# (progress, snapshot): snapshot() builds the partial result (every alpha, on the images done so far) on demand.
ProgressHook = Callable[[StreamProgress, Callable[[], "SweepResult"]], None]


@dataclass
class Predictions:
    """One set at one alpha: top-1 accuracy and the predictions of the images evaluated (all, once complete)."""

    top1: float
    pred: torch.Tensor  # (n,) predicted class index (int16, or int32 for 32,768 classes or more)
    correct: torch.Tensor  # (n,) bool; pairs images across alphas for the sampling error
    index: torch.Tensor  # (n,) ascending indices into the set of the images these rows are
    total: int  # images in the set; n is smaller while the set streams or when some could not be decoded
    probs: torch.Tensor | None = None  # (n, C) float16 class probabilities for small label sets
    pending: int = 0  # images not processed yet (0 once the set has streamed through)

    @property
    def n(self) -> int:
        """Images evaluated."""
        return len(self.pred)

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors for the disk cache."""
        out = {"pred": self.pred, "correct": self.correct, "index": self.index}
        if self.probs is not None:
            out["probs"] = self.probs
        return out


def summarise(logits: torch.Tensor, labels: torch.Tensor, class_indices: torch.Tensor | None,
              probs: bool = False, groups: tuple[tuple[int, ...], ...] | None = None) -> Predictions:
    """Predictions of a whole set from its logits (N, C) in memory: the reference the streaming engine matches."""
    restricted = project_logits(logits, groups, class_indices) if groups else restrict_logits(logits, class_indices)
    pred = restricted.argmax(dim=-1)
    correct = pred == labels
    return Predictions(float(correct.float().mean()) if len(labels) else 0.0, pred, correct,
                       torch.arange(len(labels)), len(labels), restricted.softmax(-1) if probs else None)


def stream_predictions(stream: SetStream, ensemble: bool = False) -> dict[float, Predictions]:
    """Every alpha of a streaming set as Predictions over the images evaluated so far, in set order.

    `ensemble`: the output-space ensemble's predictions instead of theta_alpha's (streams that keep them).
    """
    # Which images, in which order, is the same for every alpha: found once per set, not once per column (a
    # partial result is rebuilt every second while a sweep streams).
    positions = stream.evaluated()
    index, rows = torch.from_numpy(stream.indices)[positions].sort()
    positions = positions[rows]
    labels, pending = stream.ev.labels[index], stream.size - stream.done
    offset = len(stream.alphas) if ensemble else 0
    out = {}
    for column, alpha in enumerate(stream.alphas):
        pred = stream.pred[positions, offset + column]
        correct = pred.long() == labels
        probs = stream.probs[column, positions] if stream.probs is not None and not ensemble else None
        top1 = float(correct.float().mean()) if len(correct) else float("nan")
        out[alpha] = Predictions(top1, pred, correct, index, len(stream.ev), probs, pending=pending)
    return out


@dataclass
class SweepResult:
    """Accuracy table and per-image predictions of one experiment over an alpha grid."""

    id_set: str
    id_val: str | None
    shift_sets: list[str]
    alphas: list[float]
    predictions: dict[str, dict[float, Predictions]] = field(default_factory=dict)
    seed: int | None = None  # the fair order's seed (recorded with the results)
    # set -> alpha -> the output-space ensemble (1 - alpha) logits_0 + alpha logits_1, when the sweep kept it
    ensemble: dict[str, dict[float, Predictions]] = field(default_factory=dict)
    provenance: list[dict] = field(default_factory=list)  # where the sets' results were computed (one per run)

    def top1(self, set_name: str, alpha: float) -> float:
        """Top-1 accuracy of one set at one grid alpha."""
        return self.predictions[set_name][alpha].top1

    @property
    def complete(self) -> bool:
        """Whether every image of every set has been processed (the numbers are final, not streaming estimates)."""
        return all(p.pending == 0 for by in self.predictions.values() for p in by.values())

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per set: (images evaluated, images in the set)."""
        out = {}
        for name, by_alpha in self.predictions.items():
            first = next(iter(by_alpha.values()), None)
            if first is not None:
                out[name] = (first.n, first.total)
        return out

    @property
    def images(self) -> tuple[int, int]:
        """(images evaluated, images) summed over the sets."""
        counts = self.counts().values()
        return sum(n for n, _ in counts), sum(total for _, total in counts)

    def _top1_curves(self, errors: bool = False) -> Curves:
        """The accuracies as Curves; the sampling errors only when asked (the table and JSONL skip them)."""
        ensemble = {name: {a: p.top1 for a, p in by.items()} for name, by in self.ensemble.items() if by}
        return Curves(self.id_set, self.id_val, list(self.shift_sets), sorted(self.alphas),
                      {name: {a: p.top1 for a, p in by.items()} for name, by in self.predictions.items()},
                      errors=endpoint_errors(self) if errors else {},
                      intervals=accuracy_intervals(self) if errors else {}, counts=self.counts(), seed=self.seed,
                      ensemble=ensemble if set(ensemble) == set(self.predictions) else {})

    def curves(self) -> Curves:
        """The top-1 table with its sampling errors and counts, without per-image predictions (plots, warm starts)."""
        return self._top1_curves(errors=True)

    def table(self) -> pd.DataFrame:
        """One row per alpha: each set's top-1 (fractions) and avg_shifts."""
        return self._top1_curves().table()

    def jsonl_rows(self) -> list[dict]:
        """Rows with the paper code's keys: alpha, '<Set>:top1', 'avg_shifts:top1', id_set, shift_sets."""
        return self._top1_curves().jsonl_rows()

    def write_jsonl(self, path: str | Path) -> Path:
        """Write the results as JSONL, atomically."""
        return self._top1_curves().write_jsonl(path)


def _store(runtime: ExperimentRuntime, result: SweepResult) -> None:
    """Keep a full-grid sweep's curves (and what the models are, when loaded) for the next start to read first."""
    curves = result.curves()
    if runtime.models_loaded:
        curves.about = runtime.describe()
    else:  # read from the cache without models: keep what the stored copy says about them (e.g. an import's)
        previous = stored_curves(runtime.experiment)
        curves.about = dict(previous.about) if previous is not None else {}
    if result.provenance:  # shown in the sidebar: a warm start says where the numbers came from
        curves.about["results"] = "; ".join(provenance_line(p) for p in result.provenance)
    store_curves(runtime.experiment, curves)


def entry_key(runtime: ExperimentRuntime, name: str, alphas: Sequence[float], max_images: int | None) -> str:
    """One cache entry per set and alpha list: a sweep reads and writes a handful of files, not sets x alphas."""
    return cache_key(kind="sweep-set", alphas=[round(a, 6) for a in alphas], set=runtime.set_fingerprint(name),
                     images=max_images, **runtime.fingerprint)


def entry_tensors(by_alpha: dict[float, Predictions], labels: torch.Tensor,
                  ensemble: dict[float, Predictions] | None = None) -> dict[str, torch.Tensor]:
    """A set's predictions at every alpha as (n, A) columns over the same images (and the ensemble's, if kept)."""
    ordered = [by_alpha[a] for a in sorted(by_alpha)]
    out = {"index": ordered[0].index, "labels": labels, "pred": torch.stack([p.pred for p in ordered], dim=1)}
    if all(p.probs is not None for p in ordered):
        out["probs"] = torch.stack([p.probs for p in ordered])
    if ensemble:
        out["ensemble"] = torch.stack([ensemble[a].pred for a in sorted(ensemble)], dim=1)
    return out


def _load_entry(cache: DiskCache, key: str, alphas: Sequence[float], origins: list[dict] | None = None,
                ensemble: dict[float, Predictions] | None = None) -> dict[float, Predictions] | None:
    """A set's cached predictions at every alpha; where they were computed is added to `origins`, and the
    output-space ensemble's (when the entry has them) to `ensemble`."""
    entry = cache.get_entry(key)
    if entry is None:
        return None
    tensors, meta = entry
    origin = meta.get("provenance")
    if origins is not None and origin and origin not in origins:
        origins.append(origin)
    index, labels, pred, probs = tensors["index"], tensors["labels"], tensors["pred"], tensors.get("probs")
    out = {}
    for column, alpha in enumerate(sorted(alphas)):
        correct = pred[:, column].long() == labels
        out[alpha] = Predictions(float(meta["top1"][column]), pred[:, column], correct, index, int(meta["total"]),
                                 None if probs is None else probs[column])
        if ensemble is not None and "ensemble" in tensors:
            right = tensors["ensemble"][:, column].long() == labels
            ensemble[alpha] = Predictions(float(right.float().mean()) if len(right) else float("nan"),
                                          tensors["ensemble"][:, column], right, index, int(meta["total"]))
    return out


def _new_result(runtime: ExperimentRuntime, names: Sequence[str], alphas: Sequence[float]) -> SweepResult:
    exp = runtime.experiment
    return SweepResult(exp.id_set.name, exp.id_val.name if exp.id_val else None,
                       [s.name for s in exp.shifts if s.name in names], sorted(set(alphas)),
                       {name: {} for name in names}, seed=exp.seed, ensemble={name: {} for name in names})


def state_store(runtime: ExperimentRuntime, needed: dict[str, list[float]], cache: DiskCache,
                max_images: int | None, shard: tuple[int, int] | None = None) -> StateStore:
    """Where a stream of these sets saves its partial state; each process of a distributed sweep has its own."""
    exp = runtime.experiment
    extra = {} if shard is None else {"rank": shard[0], "world": shard[1]}
    key = cache_key(kind="sweep-state", sets={n: runtime.set_fingerprint(n) for n in needed}, alphas=needed,
                    seed=exp.seed, batch=exp.batch_size, first=FIRST_BATCH, images=max_images,
                    **runtime.fingerprint, **extra)
    return StateStore(cache, key)


def stream_sets(runtime: ExperimentRuntime, needed: dict[str, list[float]], working: Working | None,
                store: StateStore | None, max_images: int | None, hook=None, counter=None,
                shard: tuple[int, int] | None = None) -> dict[str, SetStream]:
    """Stream the given sets once each at the alphas they need (this process's part of them with `shard`)."""
    exp = runtime.experiment
    sets = {name: runtime.eval_set(name) for name in needed}
    job = StreamJob(runtime.space, working or runtime.new_working(), sets, needed, runtime.preprocess,
                    len(exp.classnames), runtime.device, exp.precision, exp.batch_size, runtime.workers)
    return stream_evaluate(job, store, hook, max_images, counter, shard)


def report_failed(runtime: ExperimentRuntime, streams: dict[str, SetStream]) -> None:
    """Record and warn about the images that could not be decoded while the sets streamed."""
    for name, stream in streams.items():
        if stream.failed:
            runtime.note_skipped(name, [(stream.ev.paths[int(stream.indices[p])], why)
                                        for p, why in sorted(stream.failed.items())])
            warnings.warn(f"{name}: skipped {len(stream.failed)} unreadable file(s) while streaming, e.g. "
                          f"{next(iter(stream.failed.values()))}", DataWarning, stacklevel=4)


def _stream(runtime: ExperimentRuntime, result: SweepResult, needed: dict[str, list[float]], working: Working | None,
            cache: DiskCache, max_images: int | None, on_progress: ProgressHook | None, resume: bool,
            counter=None) -> dict[str, SetStream]:
    """Stream the sets that miss cache entries, once each, at every alpha they miss; partial results go to hooks."""
    store = state_store(runtime, needed, cache, max_images) if resume else None
    hook = None
    if on_progress is not None:
        def hook(progress: StreamProgress, streams: dict[str, SetStream]) -> None:
            on_progress(progress, lambda: _merged(result, streams))
    streams = stream_sets(runtime, needed, working, store, max_images, hook, counter)
    report_failed(runtime, streams)
    if store is not None:
        store.clear()
    return streams


def _merged(result: SweepResult, streams: dict[str, SetStream]) -> SweepResult:
    """The result so far: cached entries plus every streaming set's alphas on the images done."""
    partial = SweepResult(result.id_set, result.id_val, result.shift_sets, result.alphas,
                          {name: dict(by) for name, by in result.predictions.items()}, result.seed,
                          ensemble={name: dict(by) for name, by in result.ensemble.items()})
    for name, stream in streams.items():
        partial.predictions[name].update(stream_predictions(stream))
        if stream.ensemble:
            partial.ensemble[name] = stream_predictions(stream, ensemble=True)
    return partial


def run_sweep(runtime: ExperimentRuntime, alphas: Sequence[float] = ALPHA_GRID, sets: Sequence[str] | None = None,
              cache: DiskCache | None = None, working: Working | None = None, on_progress: ProgressHook | None = None,
              max_images: int | None = None, resume: bool = True, counter=None) -> SweepResult:
    """Every set at every alpha: cached sets are read (no model loads for them), the others streamed in one pass.

    `max_images` evaluates only that many images of each set's fair order (a fair sample). With `resume`, the
    stream saves its partial state every 30 s and a sweep started again after a crash continues from it.
    """
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    result, keys, needed = plan_sweep(runtime, alphas, sets, cache, max_images)
    if needed:
        streams = _stream(runtime, result, needed, working, cache, max_images, on_progress, resume, counter)
        store_streams(result, streams, keys, cache, provenance(Group(), runtime.device))
    finish_sweep(runtime, result, sets, max_images)
    return result


def plan_sweep(runtime: ExperimentRuntime, alphas: Sequence[float], sets: Sequence[str] | None, cache: DiskCache,
               max_images: int | None) -> tuple[SweepResult, dict[str, str], dict[str, list[float]]]:
    """The result with every cached set read, each set's cache key, and the sets (with alphas) left to stream."""
    names = list(sets) if sets is not None else runtime.set_names
    result = _new_result(runtime, names, alphas)
    keys = {name: entry_key(runtime, name, result.alphas, max_images) for name in names}
    needed: dict[str, list[float]] = {}
    for name in names:
        found = _load_entry(cache, keys[name], result.alphas, result.provenance, result.ensemble[name])
        if found is None:
            needed[name] = list(result.alphas)
        else:
            result.predictions[name] = found
    return result, keys, needed


def store_streams(result: SweepResult, streams: dict[str, SetStream], keys: dict[str, str], cache: DiskCache,
                  origin: dict) -> None:
    """Finished streams into the result and the disk cache (atomically, one entry per set), with their origin."""
    if origin not in result.provenance:
        result.provenance.append(origin)
    for name, stream in streams.items():
        by_alpha = result.predictions[name] = stream_predictions(stream)
        if stream.ensemble:
            result.ensemble[name] = stream_predictions(stream, ensemble=True)
        first = next(iter(by_alpha.values()))
        cache.put(keys[name], entry_tensors(by_alpha, stream.ev.labels[first.index], result.ensemble.get(name)),
                  {"top1": [by_alpha[a].top1 for a in sorted(by_alpha)], "total": first.total, "set": name,
                   "alphas": sorted(by_alpha), "provenance": origin})


def finish_sweep(runtime: ExperimentRuntime, result: SweepResult, sets: Sequence[str] | None,
                 max_images: int | None) -> None:
    """A whole-experiment, every-image sweep also keeps its curves for the next start."""
    if sets is None and max_images is None:
        _store(runtime, result)


def evaluate_at(runtime: ExperimentRuntime, alpha: float, working: Working, sets: Sequence[str] | None = None,
                cache: DiskCache | None = None, max_images: int | None = None) -> dict[str, Predictions]:
    """Predictions of every set at one (possibly off-grid) alpha, in the caller's working model; cached on disk."""
    result = run_sweep(runtime, [alpha], sets, cache, working, max_images=max_images, resume=False)
    return {name: by[result.alphas[0]] for name, by in result.predictions.items()}


def cached_sweep(runtime: ExperimentRuntime, alphas: Sequence[float] = ALPHA_GRID,
                 cache: DiskCache | None = None) -> SweepResult | None:
    """The sweep read from the disk cache only (no model is loaded), or None if any set is missing."""
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    result = _new_result(runtime, runtime.set_names, alphas)
    for name in runtime.set_names:
        found = _load_entry(cache, entry_key(runtime, name, result.alphas, None), result.alphas, result.provenance,
                            result.ensemble[name])
        if found is None:
            return None
        result.predictions[name] = found
    _store(runtime, result)
    return result
