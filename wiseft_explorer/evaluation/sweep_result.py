"""The sweep's result: accuracy curves together with the per-image predictions they summarise.

`SweepResult` is a `Curves` (the torch-free table: set roles, alphas, top-1s, averages, grid lookup, JSON) that
also holds every set's `Predictions` at every alpha; `record` is the one way predictions enter it, and it keeps
the table, the counts and the sampling errors in step with them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields

import torch

from ..data.class_views import view_accuracy
from ..data.sets import project_logits, restrict_logits
from ..results.curves import Curves
from ..results.metrics import TOP1, SetMetric
from ..results.uncertainty import accuracy_intervals, endpoint_errors
from .stream_state import SetStream


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


def scored(pred: torch.Tensor, labels: torch.Tensor, index: torch.Tensor, total: int,
           probs: torch.Tensor | None = None, pending: int = 0) -> Predictions:
    """Predictions of some images of a set with their correctness and top-1 (NaN before any image is done)."""
    correct = pred.long() == labels
    top1 = float(correct.float().mean()) if len(correct) else float("nan")
    return Predictions(top1, pred, correct, index, total, probs, pending=pending)


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
    return {alpha: scored(stream.pred[positions, offset + column], labels, index, len(stream.ev),
                          stream.probs[column, positions] if stream.probs is not None and not ensemble else None,
                          pending)
            for column, alpha in enumerate(stream.alphas)}


def streamed_views(streams: Mapping[str, SetStream]) -> dict[str, dict]:
    """The streams' views (the ID set on a shift's classes): shift -> {"alphas", "top1", "n"} over the images
    evaluated so far, as JSON-ready numbers (kept in the ID set's cache entry)."""
    out = {}
    for stream in streams.values():
        if not stream.views:
            continue
        positions = stream.evaluated()
        labels = stream.ev.labels[torch.from_numpy(stream.indices)[positions]]
        for k, view in enumerate(stream.views):
            scores = [view_accuracy(stream.pred[positions, stream.view_column(k, c)], labels, view)
                      for c in range(len(stream.alphas))]
            out[view.name] = {"alphas": list(stream.alphas), "top1": [top1 for top1, _ in scores],
                              "n": scores[0][1] if scores else 0}
    return out


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


def entry_predictions(tensors: Mapping[str, torch.Tensor], top1: Sequence[float], total: int,
                      alphas: Sequence[float]) -> tuple[dict[float, Predictions], dict[float, Predictions]]:
    """entry_tensors read back: the set's predictions at every alpha (top-1s as recorded), and the output-space
    ensemble's ({} when the entry did not keep it)."""
    index, labels, pred, probs = tensors["index"], tensors["labels"], tensors["pred"], tensors.get("probs")
    weights, ensemble = {}, {}
    for column, alpha in enumerate(sorted(alphas)):
        weights[alpha] = Predictions(float(top1[column]), pred[:, column], pred[:, column].long() == labels, index,
                                     total, None if probs is None else probs[column])
        if "ensemble" in tensors:
            ensemble[alpha] = scored(tensors["ensemble"][:, column], labels, index, total)
    return weights, ensemble


@dataclass
class SweepResult(Curves):
    """One experiment over an alpha grid: the curves (top-1, or each set's metric) and the per-image predictions
    they come from.

    The curves' top-1s, counts, output-space ensemble and sampling errors are summaries of `predictions` and
    `ensemble_predictions`, recomputed by `record` (and on construction): they are not constructor arguments.
    """

    # set -> alpha -> theta_alpha's predictions
    predictions: dict[str, dict[float, Predictions]] = field(default_factory=dict)
    # set -> alpha -> the output-space ensemble (1 - alpha) logits_0 + alpha logits_1, when the sweep kept it
    ensemble_predictions: dict[str, dict[float, Predictions]] = field(default_factory=dict)
    provenance: list[dict] = field(default_factory=list)  # where the sets' results were computed (one per run)
    # set -> its metric (results.metrics), for sets whose preset scores them other than by top-1
    set_metrics: dict[str, SetMetric] = field(default_factory=dict)
    views: dict[str, dict] = field(default_factory=dict)  # streamed_views: the ID set on shifts' classes
    top1s: dict[str, dict[float, float]] = field(default_factory=dict, init=False)
    errors: dict[str, dict[float, tuple[float, float]]] = field(default_factory=dict, init=False)
    intervals: dict[str, dict[float, tuple[float, float]]] = field(default_factory=dict, init=False)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict, init=False)
    ensemble: dict[str, dict[float, float]] = field(default_factory=dict, init=False)
    id_on_classes: dict[str, dict[float, float]] = field(default_factory=dict, init=False)
    id_on_classes_counts: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._summarise()

    def record(self, predictions: Mapping[str, dict[float, Predictions]],
               ensemble: Mapping[str, dict[float, Predictions]] | None = None,
               views: Mapping[str, dict] | None = None) -> None:
        """Sets' predictions at their alphas (and their output-space ensemble's, if kept; the ID set's views on
        shifts' classes, as streamed_views gives them) into the result."""
        self.predictions.update(predictions)
        self.views.update(views or {})
        self.ensemble_predictions.update({name: by for name, by in (ensemble or {}).items() if by})
        self._summarise()

    def _summarise(self) -> None:
        """The curves of the predictions: top-1s, counts, the ensemble's top-1s and the sampling errors."""
        self.metrics = {name: m.name for name, m in self.set_metrics.items() if m.name != TOP1}
        self.top1s = {name: {a: self.score(name, p) for a, p in by.items()} for name, by in self.predictions.items()}
        self.counts = {name: (first.n, first.total) for name, by in self.predictions.items()
                       if (first := next(iter(by.values()), None)) is not None}
        ensemble = {name: {a: self.score(name, p) for a, p in self.ensemble_predictions[name].items()}
                    for name in self.predictions if self.ensemble_predictions.get(name)}
        self.ensemble = ensemble if set(ensemble) == set(self.predictions) else {}
        self.errors, self.intervals = endpoint_errors(self), accuracy_intervals(self)
        self.id_on_classes = {name: {float(a): float(v) for a, v in zip(view["alphas"], view["top1"], strict=True)}
                              for name, view in self.views.items() if view["n"]}
        self.id_on_classes_counts = {name: int(view["n"]) for name, view in self.views.items() if view["n"]}

    def score(self, name: str, p: Predictions) -> float:
        """One set's predictions as the number its curve shows: top-1, or the metric its preset names."""
        metric = self.set_metrics.get(name)
        return p.top1 if metric is None or metric.name == TOP1 else metric.value(p.pred, p.correct, p.index)

    @property
    def complete(self) -> bool:
        """Whether every image of every set has been processed (the numbers are final, not streaming estimates)."""
        return all(p.pending == 0 for by in self.predictions.values() for p in by.values())

    def curves(self) -> Curves:
        """The curves alone, a copy without per-image predictions (plots, warm starts, the stored copy)."""
        return Curves(**{f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(Curves)})
