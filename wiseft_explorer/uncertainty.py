"""Sampling error of WiSE-FT's gains: paired differences against the two endpoints, with standard errors."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch

from .sweep import SweepResult

AVG_ROW = "avg_shifts"


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


def _correct(result: SweepResult, labels: Mapping[str, torch.Tensor], name: str, alpha: float) -> torch.Tensor:
    return result.predictions[name][alpha].pred.eq(labels[name])


def compare_to_ends(result: SweepResult, labels: Mapping[str, torch.Tensor], alpha: float = 0.5) -> pd.DataFrame:
    """Per set (and the shift average): theta_alpha minus zero-shot and minus fine-tuned, each with its error."""
    missing = [a for a in (0.0, alpha, 1.0) if a not in result.alphas]
    if missing:
        raise ValueError(f"the sweep has no alpha {missing[0]}; compare needs 0, {alpha} and 1 in the grid")
    rows = {}
    for name in result.predictions:
        here = _correct(result, labels, name, alpha)
        rows[name] = {"n": len(here)}
        for end, column in ((0.0, "vs_zeroshot"), (1.0, "vs_finetuned")):
            delta, se = paired_difference(here, _correct(result, labels, name, end))
            rows[name][column], rows[name][column + "_se"] = delta, se
    shifts = [s for s in result.shift_sets if s in rows]
    if shifts:
        # The shift sets are disjoint samples, so their errors add in quadrature; the average divides by k.
        avg = {"n": sum(rows[s]["n"] for s in shifts)}
        for column in ("vs_zeroshot", "vs_finetuned"):
            avg[column] = sum(rows[s][column] for s in shifts) / len(shifts)
            avg[column + "_se"] = math.sqrt(sum(rows[s][column + "_se"] ** 2 for s in shifts)) / len(shifts)
        rows[AVG_ROW] = avg
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
