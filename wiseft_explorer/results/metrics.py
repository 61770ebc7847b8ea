"""A set's metric: how its per-image predictions become the number a curve shows, and that number's interval.

Top-1 accuracy is the default. The paper's WILDS and video shifts report others, named as its results files name
them (`<set>:<metric>`): iWildCam macro F1 over the classes present in the labels (`F1-macro_all`, as WILDS
computes it with sklearn's `f1_score(average="macro", labels=unique(y_true))`), FMoW worst-region accuracy
(`acc_worst_region`: the lowest accuracy over regions with images, WILDS leaving out its "Other" region) and the
video sets' pm-k (`pm10`: an anchor frame counts only if it and every frame of its ±k neighbourhood are right).

Proportions (top-1, pm-k) keep their closed-form intervals (Wilson over images or anchors; Newcombe for paired
differences); the others get a percentile bootstrap over images, the same draws for every alpha so that
differences along alpha are paired. Torch-free: inputs are array-likes (torch tensors convert without a copy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TOP1 = "top1"
MACRO_F1 = "F1-macro_all"
WORST_REGION = "acc_worst_region"
PM10 = "pm10"
TITLES = {TOP1: "top-1 accuracy", MACRO_F1: "macro F1", WORST_REGION: "worst-region accuracy",
          PM10: "pm-10 accuracy"}
SHORT = {TOP1: "top-1", MACRO_F1: "macro F1", WORST_REGION: "worst-region acc.", PM10: "pm-10"}
MIXED = "mean"  # the shift average's metric name when its sets use different metrics
BOOTSTRAP_DRAWS = 200
BOOTSTRAP_SEED = 0
Z95 = 1.959964


def metric_title(name: str) -> str:
    """'macro F1' for 'F1-macro_all'; unknown names are shown as they are."""
    return TITLES.get(name, name)


def axis_title(name: str) -> str:
    """What an axis shows: 'accuracy' for top-1 (as always), else the metric's name ('macro F1')."""
    return "accuracy" if name == TOP1 else metric_title(name)


def common_metric(names: list[str]) -> str:
    """The metric a mean over sets is in: theirs when they share one, else 'mean' (a mean of mixed metrics)."""
    return names[0] if names and all(n == names[0] for n in names) else (TOP1 if not names else MIXED)


@dataclass(frozen=True, eq=False)
class SetMetric:
    """A set's metric and the per-image facts it needs, indexed like the set's images.

    labels: (N,) the set's labels (macro F1); groups: (N,) each image's group (worst-group accuracy), -1 for
    images in no ranked group (FMoW's "Other" region); frames: (A, K) each anchor's frames as set indices, the
    anchor first, -1 padding (pm-k); right: (N, L) the labels that count as right for each frame, -1 padding.
    """

    name: str = TOP1
    labels: np.ndarray | None = None
    groups: np.ndarray | None = None
    frames: np.ndarray | None = None
    right: np.ndarray | None = None

    @property
    def title(self) -> str:
        return metric_title(self.name)

    @property
    def proportion(self) -> bool:
        """Whether the metric is a proportion of units right (images, or pm-k's anchors): closed-form intervals."""
        return self.name in (TOP1, PM10)

    def units(self, pred: object, correct: object, index: object) -> np.ndarray:
        """The proportion's units as right (True) or wrong: images for top-1, complete anchors for pm-k."""
        if self.name == TOP1:
            return np.asarray(correct, dtype=bool)
        if self.name != PM10:
            raise ValueError(f"{self.name} is not a proportion; use value() and bootstrap()")
        assert self.frames is not None and self.right is not None  # a pm-k metric is built with both
        rows = np.full(len(self.right), -1)
        rows[np.asarray(index)] = np.arange(len(np.asarray(index)))
        pred = np.asarray(pred).astype(np.int64)
        ok = np.zeros(len(self.right), dtype=bool)  # frame right: its prediction among its labels
        seen = rows >= 0
        ok[seen] = (self.right[seen] == pred[rows[seen]][:, None]).any(axis=1)
        members = self.frames >= 0
        done = np.where(members, seen[np.maximum(self.frames, 0)], True).all(axis=1)  # every frame evaluated
        right = np.asarray(np.where(members, ok[np.maximum(self.frames, 0)], True).all(axis=1))
        return right[done]

    def value(self, pred: object, correct: object, index: object) -> float:
        """The metric over the images evaluated (rows `index` of the set); NaN before any."""
        if self.proportion:
            units = self.units(pred, correct, index)
            return float(units.mean()) if len(units) else math.nan
        pred = np.asarray(pred).astype(np.int64)
        return float(self._draws(pred, np.asarray(index), np.ones((1, len(pred))))[0]) if len(pred) else math.nan

    def bootstrap(self, pred: object, index: object, draws: int = BOOTSTRAP_DRAWS) -> np.ndarray:
        """(draws,) values over resamples of the evaluated images (the same resamples for the same n)."""
        pred = np.asarray(pred).astype(np.int64)
        return self._draws(pred, np.asarray(index), resample_weights(len(pred), draws))

    def _draws(self, pred: np.ndarray, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if self.name == MACRO_F1:
            assert self.labels is not None  # a macro-F1 metric is built with the set's labels
            return macro_f1(pred, self.labels[index], weights)
        if self.name == WORST_REGION:
            assert self.labels is not None and self.groups is not None
            return worst_group_accuracy(pred == self.labels[index], self.groups[index], weights)
        raise ValueError(f"unknown metric {self.name!r} (known: {', '.join(TITLES)})")


TOP1_METRIC = SetMetric()


def _weighted_counts(keys: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """(B, size): per resample b, the summed weights of the rows with each key (one bincount for all draws)."""
    draws = weights.shape[0]
    flat = (np.arange(draws)[:, None] * size + keys[None, :]).ravel()
    return np.bincount(flat, weights=weights.ravel(), minlength=draws * size).reshape(draws, size)


def macro_f1(pred: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) macro F1 over the classes present in each resample's labels: F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c),
    which is 2 TP_c / (#labelled c + #predicted c); a class never predicted right scores 0."""
    size = int(max(pred.max(initial=0), labels.max(initial=0))) + 1
    hits = np.where(pred == labels, labels, size)  # misses go to a spare bin
    tp = _weighted_counts(hits, weights, size + 1)[:, :size]
    labelled = _weighted_counts(labels, weights, size)
    predicted = _weighted_counts(pred, weights, size)
    present = labelled > 0
    f1 = np.where(present, 2 * tp / np.maximum(labelled + predicted, 1e-12), 0.0)
    return f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def worst_group_accuracy(correct: np.ndarray, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B,) the lowest accuracy over the groups (>= 0) with images in each resample; NaN when none has any."""
    ranked = groups >= 0
    if not ranked.any():
        return np.full(weights.shape[0], math.nan)
    size = int(groups.max()) + 1
    keys, w = groups[ranked], weights[:, ranked]
    right = _weighted_counts(keys, w * correct[ranked].astype(float), size)
    seen = _weighted_counts(keys, w, size)
    acc = np.where(seen > 0, right / np.maximum(seen, 1e-12), np.inf)
    return acc.min(axis=1)


@lru_cache(maxsize=2)
def resample_weights(n: int, draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(draws, n) how often each of n images is drawn in each resample: seeded, so every alpha sees the same."""
    picks = np.random.default_rng(seed).integers(0, n, size=(draws, n))
    return np.stack([np.bincount(row, minlength=n) for row in picks]).astype(float)


def percentile_interval(values: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap values (NaN draws, from empty resamples, left out)."""
    values = values[np.isfinite(values)]
    if not len(values):
        return math.nan, math.nan
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
