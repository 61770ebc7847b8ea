"""Sampling error of WiSE-FT's gains: paired differences against the two endpoints, with standard errors."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import pandas as pd
import torch

from .curves import AVG_ROW, shift_average

ENDS = (0.0, 1.0)
Z95 = 1.959964  # two-sided 95% normal quantile


class Scored(Protocol):
    """One set at one alpha: its accuracy and which images were right (sweep_result.Predictions is one)."""

    @property
    def top1(self) -> float: ...

    @property
    def correct(self) -> torch.Tensor: ...  # (n,) bool

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
        out[name] = {alpha: wilson_interval(int(p.correct.sum()), p.n) for alpha, p in by_alpha.items()}
    shifts = [s for s in result.shift_sets if s in out]
    if shifts:
        out[AVG_ROW] = {}
        for alpha in result.alphas:
            if not all(alpha in out[s] for s in shifts):
                continue
            # Disjoint sets: the half-widths add in quadrature, and the mean divides them by k.
            mean = shift_average({s: result.predictions[s][alpha].top1 for s in shifts}, shifts)
            half = math.sqrt(sum(((out[s][alpha][1] - out[s][alpha][0]) / 2) ** 2 for s in shifts)) / len(shifts)
            out[AVG_ROW][alpha] = (max(0.0, mean - half), min(1.0, mean + half))
    return out


def paired_difference(correct_a: torch.Tensor, correct_b: torch.Tensor) -> tuple[float, float]:
    """Mean of a - b over the same images (1 = right, 0 = wrong) and the standard error of that mean."""
    if correct_a.shape != correct_b.shape or correct_a.ndim != 1:
        raise ValueError(f"need two 1-D correctness vectors of one set, got {tuple(correct_a.shape)} and "
                         f"{tuple(correct_b.shape)}")
    diff = correct_a.float() - correct_b.float()
    n = len(diff)
    if n < 2:
        return (float(diff.mean()) if n else math.nan), math.nan
    # Paired: images both models get right (or wrong) add nothing, so the error is far below two separate ones.
    return float(diff.mean()), float(diff.std(unbiased=True)) / math.sqrt(n)


def _pairs(result: Swept, alpha: float) -> dict[str, dict[float, tuple[float, float, int]]] | None:
    """Per set: (difference, standard error, n) against each end, or None when a set lacks alpha or an end.

    A set's alphas come from one stream or one cache entry, so they always saw the same images."""
    out = {}
    for name, by_alpha in result.predictions.items():
        here = by_alpha.get(alpha)
        ends = [by_alpha[end] for end in ENDS if end in by_alpha]
        if here is None or len(ends) < len(ENDS):
            return None
        out[name] = {end: (*paired_difference(here.correct, e.correct), len(here.correct))
                     for end, e in zip(ENDS, ends, strict=True)}
    return out


def _with_average(pairs: dict[str, dict[float, tuple[float, float, int]]], shifts: Sequence[str]) -> None:
    """Add the shift average: disjoint samples, so the errors add in quadrature and the mean divides by k."""
    shifts = [s for s in shifts if s in pairs]
    if not shifts:
        return
    k = len(shifts)
    pairs[AVG_ROW] = {end: (sum(pairs[s][end][0] for s in shifts) / k,
                            math.sqrt(sum(pairs[s][end][1] ** 2 for s in shifts)) / k,
                            sum(pairs[s][end][2] for s in shifts)) for end in ENDS}


def endpoint_errors(result: Swept) -> dict[str, dict[float, tuple[float, float]]]:
    """Per set (and the shift average) and alpha: the standard errors against zero-shot and fine-tuned ({} if unknown)."""
    errors: dict[str, dict[float, tuple[float, float]]] = {}
    for alpha in result.alphas:
        pairs = _pairs(result, alpha)
        if pairs is None:
            return {}
        _with_average(pairs, result.shift_sets)
        for name, by_end in pairs.items():
            errors.setdefault(name, {})[alpha] = (by_end[0.0][1], by_end[1.0][1])
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
    rows = {name: {"n": by_end[0.0][2], "vs_zeroshot": by_end[0.0][0], "vs_zeroshot_se": by_end[0.0][1],
                   "vs_finetuned": by_end[1.0][0], "vs_finetuned_se": by_end[1.0][1]} for name, by_end in pairs.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def format_comparison(table: pd.DataFrame, alpha: float) -> str:
    """The comparison as text, in accuracy points: 'delta +- standard error' per set."""
    def cell(row: pd.Series, column: str) -> str:
        return f"{100 * row[column]:+.1f} ± {100 * row[column + '_se']:.1f}"

    lines = [f"alpha {alpha:g} minus each end, points (paired difference ± standard error; n images):"]
    width = max(len(str(name)) for name in table.index)
    for name, row in table.iterrows():
        lines.append(f"  {name:<{width}}  vs zero-shot {cell(row, 'vs_zeroshot'):>13}   "
                     f"vs fine-tuned {cell(row, 'vs_finetuned'):>13}   n={int(row['n'])}")
    return "\n".join(lines)
