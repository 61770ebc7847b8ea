"""The alpha sweep: accuracy and per-image predictions for every alpha and set, streamed once and cached on disk."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

from ..core.distributed import Group, provenance, provenance_line
from ..core.interpolate import Working
from ..data.class_views import VIEW_PRESETS
from ..data.preset_sets import DataWarning
from ..experiment.presets import preset_metric
from ..results.curves import ALPHA_GRID, store_curves, stored_curves
from ..results.metrics import TOP1, SetMetric
from ..store.cache import DiskCache
from ..store.keys import cache_key, software_versions
from .engine import FIRST_BATCH, StreamJob, StreamProgress, stream_evaluate
from .features import feature_job
from .runtime import ExperimentRuntime
from .stream_state import SetStream, StateStore
from .sweep_result import (
    Predictions,
    SweepResult,
    entry_predictions,
    entry_tensors,
    stream_predictions,
    streamed_views,
)

# (progress, snapshot): snapshot() builds the partial result (every alpha, on the images done so far) on demand.
ProgressHook = Callable[[StreamProgress, Callable[[], "SweepResult"]], None]


def _store(runtime: ExperimentRuntime, result: SweepResult) -> None:
    """Keep a full-grid sweep's curves (and what the models are, when loaded) for the next start to read first.

    A merge method's sweep keeps nothing there: the stored curves are the experiment's WiSE-FT line."""
    if runtime.fingerprint.get("method"):
        return
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
    """One cache entry per set and alpha list: a sweep reads and writes a handful of files, not sets x alphas.

    A `max_images` sample is the first images of the set's fair order, which the experiment's seed draws."""
    views = {s.name: runtime.set_fingerprint(s.name) for s in runtime.experiment.shifts
             if name == runtime.experiment.id_set.name and s.preset in VIEW_PRESETS}  # ID on these shifts' classes
    return cache_key(kind="sweep-set", alphas=[round(a, 6) for a in alphas], set=runtime.set_fingerprint(name),
                     images=max_images, sample_seed=runtime.experiment.seed if max_images else None,
                     versions=software_versions(), **runtime.fingerprint, **({"views": views} if views else {}))


def _read_entries(cache: DiskCache, result: SweepResult, keys: dict[str, str], all_or_none: bool = False
                  ) -> list[str]:
    """Record every set whose entry is cached (with where it was computed); the names of the others.

    `all_or_none`: stop reading at the first set that is not cached, and record nothing."""
    found, ensemble, missing, views = {}, {}, [], {}
    for name, key in keys.items():
        entry = cache.get_entry(key)
        if entry is None:
            missing.append(name)
            if all_or_none:
                return missing
            continue
        tensors, meta = entry
        if meta["provenance"] not in result.provenance:
            result.provenance.append(meta["provenance"])
        found[name], ensemble[name] = entry_predictions(tensors, meta["top1"], int(meta["total"]), result.alphas)
        views.update(meta.get("views", {}))
    result.record(found, ensemble, views)
    return missing


def _new_result(runtime: ExperimentRuntime, names: Sequence[str], alphas: Sequence[float]) -> SweepResult:
    exp = runtime.experiment
    return SweepResult(exp.id_set.name, exp.id_val.name if exp.id_val else None,
                       [s.name for s in exp.shifts if s.name in names], sorted(set(alphas)), seed=exp.seed,
                       predictions={name: {} for name in names}, set_metrics=set_metrics(runtime, names))


def set_metrics(runtime: ExperimentRuntime, names: Sequence[str]) -> dict[str, SetMetric]:
    """The metrics of the sets whose preset scores them other than by top-1 (only those sets are read here)."""
    return {name: runtime.eval_set(name).metric for name in names if preset_metric(runtime.spec(name)) != TOP1}


def state_store(runtime: ExperimentRuntime, needed: dict[str, list[float]], cache: DiskCache,
                max_images: int | None, shard: tuple[int, int] | None = None) -> StateStore:
    """Where a stream of these sets saves its partial state; each process of a distributed sweep has its own."""
    exp = runtime.experiment
    extra = {} if shard is None else {"rank": shard[0], "world": shard[1]}
    key = cache_key(kind="sweep-state", sets={n: runtime.set_fingerprint(n) for n in needed}, alphas=needed,
                    seed=exp.seed, batch=exp.batch_size, first=FIRST_BATCH, images=max_images,
                    versions=software_versions(), **runtime.fingerprint, **extra)
    return StateStore(cache, key)


def stream_sets(runtime: ExperimentRuntime, needed: dict[str, list[float]], working: Working | None,
                store: StateStore | None, max_images: int | None, hook=None, counter=None,
                shard: tuple[int, int] | None = None, cache: DiskCache | None = None) -> dict[str, SetStream]:
    """Stream the given sets once each at the alphas they need (this process's part of them with `shard`).

    When the endpoints share their image tower, each image's features are computed once (or read from the
    feature cache in `cache`, the store's, or the experiment's) and every alpha is its head on them."""
    exp = runtime.experiment
    sets = {name: runtime.eval_set(name) for name in needed}
    working = working or runtime.new_working()
    cache = cache or (store.cache if store is not None else DiskCache(exp.cache_dir))
    job = StreamJob(runtime.space, working, sets, needed, runtime.preprocess, len(exp.classnames), runtime.device,
                    exp.precision, exp.batch_size, runtime.workers,
                    views={name: runtime.class_views(name) for name in needed},
                    features=feature_job(runtime, needed, working.model, cache))
    return stream_evaluate(job, store, hook, max_images, counter, shard)


def report_failed(runtime: ExperimentRuntime, streams: dict[str, SetStream]) -> None:
    """Record and warn about the images that could not be decoded while the sets streamed."""
    for name, stream in streams.items():
        if stream.failed:
            paths = stream.ev.paths
            assert paths is not None  # only folder sets have images that fail to decode
            runtime.note_skipped(name, [(paths[int(stream.indices[p])], why)
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
    streams = stream_sets(runtime, needed, working, store, max_images, hook, counter, cache=cache)
    report_failed(runtime, streams)
    if store is not None:
        store.clear()
    return streams


def _merged(result: SweepResult, streams: dict[str, SetStream]) -> SweepResult:
    """The result so far: cached entries plus every streaming set's alphas on the images done."""
    predictions, ensemble = _streamed(streams)
    merged = SweepResult(result.id_set, result.id_val, result.shift_sets, result.alphas, seed=result.seed,
                         set_metrics=result.set_metrics,
                         predictions={**result.predictions, **predictions},
                         ensemble_predictions={**result.ensemble_predictions, **ensemble})
    merged.record({}, None, {**result.views, **streamed_views(streams)})
    return merged


def _streamed(streams: dict[str, SetStream]) -> tuple[dict[str, dict[float, Predictions]],
                                                      dict[str, dict[float, Predictions]]]:
    """The streams' predictions at every alpha, and their output-space ensemble's (streams that keep it)."""
    return ({name: stream_predictions(stream) for name, stream in streams.items()},
            {name: stream_predictions(stream, ensemble=True) for name, stream in streams.items() if stream.ensemble})


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
    return result, keys, {name: list(result.alphas) for name in _read_entries(cache, result, keys)}


def store_streams(result: SweepResult, streams: dict[str, SetStream], keys: dict[str, str], cache: DiskCache,
                  origin: dict) -> None:
    """Finished streams into the result and the disk cache (atomically, one entry per set), with their origin."""
    if origin not in result.provenance:
        result.provenance.append(origin)
    predictions, ensemble = _streamed(streams)
    for name, stream in streams.items():
        by_alpha = predictions[name]
        first = next(iter(by_alpha.values()))
        views = streamed_views({name: stream})
        cache.put(keys[name], entry_tensors(by_alpha, stream.ev.labels[first.index], ensemble.get(name)),
                  {"top1": [by_alpha[a].top1 for a in sorted(by_alpha)], "total": first.total, "set": name,
                   "alphas": sorted(by_alpha), "provenance": origin, **({"views": views} if views else {})})
    result.record(predictions, ensemble, streamed_views(streams))


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
    keys = {name: entry_key(runtime, name, result.alphas, None) for name in runtime.set_names}
    if _read_entries(cache, result, keys, all_or_none=True):
        return None
    _store(runtime, result)
    return result
