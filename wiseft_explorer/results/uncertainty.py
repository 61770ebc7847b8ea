"""Sampling error of WiSE-FT's gains: paired differences against the two endpoints, with standard errors and
Newcombe's intervals (a paired bootstrap over images for metrics that are not proportions, results.metrics)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from .curves import AVG_ROW, MIN_DISAGREEING, shift_average
from .metrics import TOP1_METRIC, SetMetric, percentile_interval

ENDS = (0.0, 1.0)
Z95 = 1.959964  # two-sided 95% normal quantile


class Scored(Protocol):
    """One set at one alpha: its accuracy and which images were right (sweep_result.Predictions is one)."""

    @property
    def top1(self) -> float: ...

    @property
    def correct(self) -> torch.Tensor: ...  # (n,) bool

    @property
    def pred(self) -> torch.Tensor: ...  # (n,) predicted classes

    @property
    def index(self) -> torch.Tensor: ...  # (n,) which images of the set

    @property
    def pending(self) -> int: ...

    @property
    def n(self) -> int: ...


class Swept(Protocol):
    """What the error estimates read from a sweep (sweep_result.SweepResult is one, and imports this module)."""

    @property
    def predictions(self) -> Mapping[str, Mapping[float, Scored]]: ...

    @property
    def shift_sets(self) -> Sequence[str]: ...

    @property
    def alphas(self) -> Sequence[float]: ...

    @property
    def top1s(self) -> Mapping[str, Mapping[float, float]]: ...  # each set's number, in its metric

    @property
    def set_metrics(self) -> Mapping[str, SetMetric]: ...  # sets without one are scored by top-1


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy of `correct` out of `n` (sound at small n and near 0% or 100%)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_intervals(result: Swept) -> dict[str, dict[float, tuple[float, float]]]:
    """Per set (and the shift average) and alpha: a 95% interval of the accuracy on the images evaluated so far."""
    out: dict[str, dict[float, tuple[float, float]]] = {}
    for name, by_alpha in result.predictions.items():
        metric = getattr(result, "set_metrics", {}).get(name, TOP1_METRIC)  # plain data: top-1
        found = {alpha: metric_interval(metric, p) for alpha, p in by_alpha.items()}
        out[name] = {alpha: interval for alpha, interval in found.items() if interval is not None}
    shifts = [s for s in result.shift_sets if s in out]
    if shifts:
        out[AVG_ROW] = {}
        for alpha in result.alphas:
            if not all(alpha in out[s] for s in shifts):
                continue
            # Disjoint sets: the half-widths add in quadrature, and the mean divides them by k.
            mean = shift_average({s: result.top1s[s][alpha] for s in shifts}, shifts)
            half = math.sqrt(sum(((out[s][alpha][1] - out[s][alpha][0]) / 2) ** 2 for s in shifts)) / len(shifts)
            out[AVG_ROW][alpha] = (max(0.0, mean - half), min(1.0, mean + half))
    return out


def metric_interval(metric: SetMetric, p: Scored) -> tuple[float, float] | None:
    """95% interval of a set's metric: Wilson for proportions, else a bootstrap over images once the set is
    complete (None while it streams: the bootstrap is too slow to redo every second)."""
    if metric.proportion:
        units = metric.units(p.pred, p.correct, p.index)
        return wilson_interval(int(units.sum()), len(units))
    return None if p.pending or not p.n else percentile_interval(metric.bootstrap(p.pred, p.index))


def _check_pair(correct_a: torch.Tensor, correct_b: torch.Tensor) -> None:
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(f"need two 1-D correctness vectors of one set, got {tuple(correct_a.shape)} and "
                         f"{tuple(correct_b.shape)}")


def paired_difference(correct_a: torch.Tensor, correct_b: torch.Tensor) -> tuple[float, float]:
    """Mean of a - b over the same images (1 = right, 0 = wrong) and the standard error of that mean.

    The error is NaN (not known) while fewer than MIN_DISAGREEING images disagree: then it says little (it is 0
    when none disagree, however few the images), and newcombe_interval is the honest statement.
    """
    _check_pair(correct_a, correct_b)
    diff = correct_a.float() - correct_b.float()
    n = len(diff)
    mean = float(diff.mean()) if n else math.nan
    if int(diff.ne(0).sum()) < MIN_DISAGREEING:
        return mean, math.nan
    # Paired: images both models get right (or wrong) add nothing, so the error is far below two separate ones.
    return mean, float(diff.std(unbiased=True)) / math.sqrt(n)


def paired_counts(correct_a: torch.Tensor, correct_b: torch.Tensor) -> tuple[int, int, int, int]:
    """The paired 2x2 table: images both got right, only a, only b, neither."""
    _check_pair(correct_a, correct_b)
    a, b = correct_a.bool(), correct_b.bool()
    return int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum()), int((~a & ~b).sum())


def newcombe_interval(both: int, only_a: int, only_b: int, neither: int, z: float = Z95) -> tuple[float, float]:
    """95% interval of accuracy(a) - accuracy(b) on paired images: Newcombe's (1998) method 10.

    The Wilson intervals of both accuracies, combined with their correlation (the phi coefficient of the paired
    table, corrected for continuity). Sound at any size: with no image disagreeing yet it is wide, not zero.
    """
    n = both + only_a + only_b + neither
    if n == 0:
        return -1.0, 1.0
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    low_a, high_a = wilson_interval(both + only_a, n, z)
    low_b, high_b = wilson_interval(both + only_b, n, z)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    cross = both * neither - only_a * only_b
    corrected = cross - n / 2 if cross > n / 2 else min(cross, 0)  # a positive correlation is pulled n/2 towards 0
    phi = corrected / math.sqrt(margins) if margins else 0.0
    delta = p_a - p_b
    below = math.sqrt(max(0.0, (p_a - low_a) ** 2 - 2 * phi * (p_a - low_a) * (high_b - p_b) + (high_b - p_b) ** 2))
    above = math.sqrt(max(0.0, (high_a - p_a) ** 2 - 2 * phi * (high_a - p_a) * (p_b - low_b) + (p_b - low_b) ** 2))
    return max(-1.0, delta - below), min(1.0, delta + above)


@dataclass(frozen=True)
class Paired:
    """theta_alpha against one end on one set (or the shift average): difference, its error and interval, n."""

    diff: float
    se: float  # NaN while too few images disagree
    low: float  # Newcombe's 95% interval of the difference
    high: float
    n: int


def _paired(here: torch.Tensor | np.ndarray, end: torch.Tensor | np.ndarray) -> Paired:
    here, end = torch.as_tensor(here), torch.as_tensor(end)
    diff, se = paired_difference(here, end)
    return Paired(diff, se, *newcombe_interval(*paired_counts(here, end)), len(here))


def paired_metric(metric: SetMetric, here: Scored, end: Scored) -> Paired:
    """theta_alpha against an end in the set's metric: over its units (images, anchors) for proportions, else a
    paired bootstrap over images (the same resamples for both; no error while either streams)."""
    if metric is TOP1_METRIC:  # per image: plain data with `correct` alone will do
        return _paired(np.asarray(here.correct, dtype=bool), np.asarray(end.correct, dtype=bool))
    if metric.proportion:
        return _paired(metric.units(here.pred, here.correct, here.index),
                       metric.units(end.pred, end.correct, end.index))
    diff = metric.value(here.pred, here.correct, here.index) - metric.value(end.pred, end.correct, end.index)
    if here.pending or end.pending or int((here.pred != end.pred).sum()) < MIN_DISAGREEING:
        return Paired(diff, math.nan, math.nan, math.nan, here.n)
    draws = metric.bootstrap(here.pred, here.index) - metric.bootstrap(end.pred, end.index)
    return Paired(diff, float(draws.std(ddof=1)), *percentile_interval(draws), here.n)


def _pairs(result: Swept, alpha: float) -> dict[str, dict[float, Paired]] | None:
    """Per set: theta_alpha against each end, or None when a set lacks alpha or an end.

    A set's alphas come from one stream or one cache entry, so they always saw the same images."""
    out = {}
    for name, by_alpha in result.predictions.items():
        here = by_alpha.get(alpha)
        ends = [by_alpha[end] for end in ENDS if end in by_alpha]
        if here is None or len(ends) < len(ENDS):
            return None
        metric = getattr(result, "set_metrics", {}).get(name, TOP1_METRIC)  # plain data: top-1
        out[name] = {end: paired_metric(metric, here, e) for end, e in zip(ENDS, ends, strict=True)}
    return out


def average_paired(parts: Sequence[Paired]) -> Paired:
    """The shift average of per-set differences: disjoint samples, so the errors (and each side of the intervals,
    as Newcombe's own square-and-add does) add in quadrature and the mean divides by k. NaN errors stay NaN."""
    k = len(parts)
    diff = sum(p.diff for p in parts) / k
    return Paired(diff, math.sqrt(sum(p.se ** 2 for p in parts)) / k,
                  diff - math.sqrt(sum((p.diff - p.low) ** 2 for p in parts)) / k,
                  diff + math.sqrt(sum((p.high - p.diff) ** 2 for p in parts)) / k, sum(p.n for p in parts))


def _with_average(pairs: dict[str, dict[float, Paired]], shifts: Sequence[str]) -> None:
    """Add the shift average (average_paired of each end's per-shift differences)."""
    shifts = [s for s in shifts if s in pairs]
    if shifts:
        pairs[AVG_ROW] = {end: average_paired([pairs[s][end] for s in shifts]) for end in ENDS}


def endpoint_errors(result: Swept) -> dict[str, dict[float, tuple[float, float]]]:
    """Per set (and the shift average) and alpha: the standard errors against zero-shot and fine-tuned ({} if unknown)."""
    errors: dict[str, dict[float, tuple[float, float]]] = {}
    for alpha in result.alphas:
        pairs = _pairs(result, alpha)
        if pairs is None:
            return {}
        _with_average(pairs, result.shift_sets)
        for name, by_end in pairs.items():
            errors.setdefault(name, {})[alpha] = (by_end[0.0].se, by_end[1.0].se)
    return errors


def compare_to_ends(result: Swept, alpha: float = 0.5) -> pd.DataFrame:
    """Per set (and the shift average): theta_alpha minus zero-shot and minus fine-tuned, each with its error."""
    missing = [a for a in (0.0, alpha, 1.0) if a not in result.alphas]
    if missing:
        raise ValueError(f"the sweep has no alpha {missing[0]}; compare needs 0, {alpha} and 1 in the grid")
    pairs = _pairs(result, alpha)
    if pairs is None:
        raise ValueError(f"a set has no predictions at alpha {alpha} or at an end yet")
    _with_average(pairs, result.shift_sets)
    rows = {name: {"n": by_end[0.0].n, **{f"{column}{suffix}": getattr(by_end[end], field)
                                         for end, column in ((0.0, "vs_zeroshot"), (1.0, "vs_finetuned"))
                                         for suffix, field in (("", "diff"), ("_se", "se"), ("_low", "low"),
                                                               ("_high", "high"))}}
            for name, by_end in pairs.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def format_comparison(table: pd.DataFrame, alpha: float) -> str:
    """The comparison as text, in accuracy points: 'delta ± standard error [95% interval]' per set."""
    def cell(row: pd.Series, column: str) -> str:
        se = row[column + "_se"]
        error = "  (few differ)" if math.isnan(se) else f" ± {100 * se:.1f}"
        return (f"{100 * row[column]:+.1f}{error} "
                f"[{100 * row[column + '_low']:+.1f}, {100 * row[column + '_high']:+.1f}]")

    lines = [f"alpha {alpha:g} minus each end, in points: paired difference ± standard error [Newcombe's 95% "
             f"interval]; n images (no ± while fewer than {MIN_DISAGREEING} images disagree):"]
    width = max(len(str(name)) for name in table.index)
    for name, row in table.iterrows():
        lines.append(f"  {name:<{width}}  vs zero-shot {cell(row, 'vs_zeroshot'):>28}   "
                     f"vs fine-tuned {cell(row, 'vs_finetuned'):>28}   n={int(row['n'])}")
    return "\n".join(lines)
