"""The alpha sweep: accuracy and per-image predictions for every alpha and set, cached on disk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from .batching import predict_logits
from .cache import DiskCache, cache_key
from .curves import ALPHA_GRID, Curves, store_curves
from .data import restrict_logits
from .interpolate import Working
from .runtime import ExperimentRuntime
from .uncertainty import endpoint_errors

TOP_K = 5
FULL_PROBS_MAX_CLASSES = 100  # keep every class probability for small label sets (the gallery's alpha charts)

Progress = Callable[[int, int, str, float], None]  # (done, total, set name, alpha)


@dataclass
class Predictions:
    """One set at one alpha: top-1 accuracy and per-image predictions."""

    top1: float
    pred: torch.Tensor  # (N,) predicted class index
    top5_idx: torch.Tensor  # (N, 5) class indices, most likely first
    top5_prob: torch.Tensor  # (N, 5) softmax probabilities
    probs: torch.Tensor | None = None  # (N, C) all probabilities when C is small
    correct: torch.Tensor | None = None  # (N,) bool; pairs images across alphas for the sampling error

    def as_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors for the disk cache."""
        out = {"pred": self.pred, "top5_idx": self.top5_idx, "top5_prob": self.top5_prob}
        for name in ("probs", "correct"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def coarse_first(alphas: Sequence[float]) -> list[float]:
    """Order alphas so the endpoints, 0.5, then quarters come first: a curve's shape appears early."""
    def rank(a: float) -> tuple[int, float]:
        for level, step in enumerate((1.0, 0.5, 0.25, 0.1)):
            if abs(a / step - round(a / step)) < 1e-9:
                return level, a
        return 4, a
    return sorted(dict.fromkeys(alphas), key=rank)


def summarise(logits: torch.Tensor, labels: torch.Tensor, class_indices: torch.Tensor | None) -> Predictions:
    """Top-1 accuracy and top-5 of logits, restricted to the set's classes."""
    probs = restrict_logits(logits, class_indices).softmax(dim=-1)
    k = min(TOP_K, probs.shape[1] if class_indices is None else len(class_indices))
    top_prob, top_idx = probs.topk(k, dim=-1)
    pred = top_idx[:, 0]
    correct = pred == labels
    return Predictions(float(correct.float().mean()) if len(labels) else 0.0, pred, top_idx, top_prob,
                       probs if probs.shape[1] <= FULL_PROBS_MAX_CLASSES else None, correct)


@dataclass
class SweepResult:
    """Accuracy table and per-image predictions of one experiment over an alpha grid."""

    id_set: str
    id_val: str | None
    shift_sets: list[str]
    alphas: list[float]
    predictions: dict[str, dict[float, Predictions]] = field(default_factory=dict)

    def top1(self, set_name: str, alpha: float) -> float:
        """Top-1 accuracy of one set at one grid alpha."""
        return self.predictions[set_name][alpha].top1

    def _top1_curves(self, errors: bool = False) -> Curves:
        """The accuracies as Curves; the per-image sampling errors only when asked (the table and JSONL skip them)."""
        return Curves(self.id_set, self.id_val, list(self.shift_sets), sorted(self.alphas),
                      {name: {a: p.top1 for a, p in by.items()} for name, by in self.predictions.items()},
                      errors=endpoint_errors(self) if errors else {})

    def curves(self) -> Curves:
        """The top-1 table and its sampling errors, without the per-image predictions (for plots and warm starts)."""
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
    store_curves(runtime.experiment, curves)


def _entry_key(runtime: ExperimentRuntime, set_fp: str, alpha: float) -> str:
    return cache_key(kind="sweep-entry", alpha=round(alpha, 6), set=set_fp, **runtime.fingerprint)


def _load_entry(cache: DiskCache, key: str) -> Predictions | None:
    entry = cache.get_entry(key)
    if entry is None:
        return None
    tensors, meta = entry
    if "correct" not in tensors:  # written before per-image correctness was kept: recompute it once
        return None
    return Predictions(float(meta["top1"]), tensors["pred"], tensors["top5_idx"], tensors["top5_prob"],
                       tensors.get("probs"), tensors.get("correct"))


def _new_result(runtime: ExperimentRuntime, names: Sequence[str], alphas: Sequence[float]) -> SweepResult:
    exp = runtime.experiment
    return SweepResult(exp.id_set.name, exp.id_val.name if exp.id_val else None,
                       [s.name for s in exp.shifts if s.name in names], sorted(set(alphas)),
                       {name: {} for name in names})


def _evaluate(runtime: ExperimentRuntime, cache: DiskCache, name: str, set_fp: str, alpha: float,
              get_working: Callable[[], Working]) -> Predictions:
    """One (set, alpha) entry: read from the cache, else computed in the working model and cached."""
    key = _entry_key(runtime, set_fp, alpha)
    preds = _load_entry(cache, key)
    if preds is None:
        exp, ev = runtime.experiment, runtime.eval_set(name)
        model = runtime.classifier_at(get_working(), alpha)  # a no-op when the model is already at alpha
        preds = summarise(predict_logits(model, ev.images, runtime.device, exp.precision, exp.batch_size),
                          ev.labels, ev.class_indices)
        cache.put(key, preds.as_tensors(), {"top1": preds.top1, "set": name, "alpha": alpha})
    return preds


def run_sweep(runtime: ExperimentRuntime, alphas: Sequence[float] = ALPHA_GRID, sets: Sequence[str] | None = None,
              cache: DiskCache | None = None, progress: Progress | None = None, working: Working | None = None,
              on_alpha: Callable[[SweepResult], None] | None = None) -> SweepResult:
    """Evaluate every set at every alpha, coarse alphas first; cached entries are read (models load only if needed).

    `on_alpha` receives, after each alpha, a result holding the alphas finished so far (for progressive plots).
    """
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    names = list(sets) if sets is not None else runtime.set_names
    order = coarse_first(alphas)
    set_fps = {name: runtime.set_fingerprint(name) for name in names}
    result = _new_result(runtime, names, order)
    holder = [working]

    def get_working() -> Working:
        if holder[0] is None:  # created on first need, so a fully cached sweep never loads a model
            holder[0] = runtime.new_working()
        return holder[0]

    total, done, finished = len(order) * len(names), 0, []
    for alpha in order:
        for name in names:
            result.predictions[name][alpha] = _evaluate(runtime, cache, name, set_fps[name], alpha, get_working)
            done += 1
            if progress:
                progress(done, total, name, alpha)
        finished.append(alpha)
        if on_alpha:
            partial = _new_result(runtime, names, finished)
            partial.predictions = {n: {a: result.predictions[n][a] for a in finished} for n in names}
            on_alpha(partial)
    if sets is None:
        _store(runtime, result)
    return result


def evaluate_at(runtime: ExperimentRuntime, alpha: float, working: Working, sets: Sequence[str] | None = None,
                cache: DiskCache | None = None) -> dict[str, Predictions]:
    """Predictions of every set at one (possibly off-grid) alpha, in the caller's working model; cached on disk."""
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    return {name: _evaluate(runtime, cache, name, runtime.set_fingerprint(name), alpha, lambda: working)
            for name in (list(sets) if sets is not None else runtime.set_names)}


def cached_sweep(runtime: ExperimentRuntime, alphas: Sequence[float] = ALPHA_GRID,
                 cache: DiskCache | None = None) -> SweepResult | None:
    """The sweep read from the disk cache only (no model is loaded), or None if any entry is missing."""
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    names = runtime.set_names
    result = _new_result(runtime, names, alphas)
    for name in names:
        set_fp = runtime.set_fingerprint(name)
        for alpha in result.alphas:
            preds = _load_entry(cache, _entry_key(runtime, set_fp, alpha))
            if preds is None:
                return None
            result.predictions[name][alpha] = preds
    _store(runtime, result)
    return result
