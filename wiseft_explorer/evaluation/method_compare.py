"""Every merge method beside WiSE-FT on one experiment, and the label-free choices of α.

Each method is swept along its own path (α from θ₀ to the method's point) and read at its best held-out α (chosen
on `[id_val]`, as WiSE-FT's is; on the ID test set without one, which is optimistic and said so). Its ID and
average-shift accuracy are set against WiSE-FT at WiSE-FT's best held-out α, per image: the paired difference and
its standard error on each set, the shift average's from the shifts' in quadrature (results.uncertainty).

The label-free estimates (Model Stock's ratio with ≥ 2 endpoints, DaWin's mean λ on the unlabelled ID images) are
α values for WiSE-FT: each is evaluated at exactly that α and compared with the labelled optimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..core.checkpoints import CheckpointError
from ..core.merging.base import MergeError
from ..results.curves import ALPHA_GRID, alpha_choices
from ..results.metrics import TOP1_METRIC
from ..results.uncertainty import Paired, average_paired, paired_metric
from ..store.cache import DiskCache
from .label_free import dawin_from_sweep, model_stock_alpha
from .merging import with_method
from .runtime import ExperimentRuntime
from .sweep import evaluate_at, run_sweep
from .sweep_result import SweepResult

# The table's methods at their default controls (LiNeS at β = 0.5: at its default 0 it is WiSE-FT).
DEFAULT_CHOICES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("soup", {"members": "all"}), ("soup", {"members": "greedy"}), ("model-stock", {}), ("slerp", {}),
    ("lines", {"beta": 0.5}), ("ties-trim", {}), ("dare", {}), ("fisher", {}))


@dataclass(frozen=True)
class MethodRow:
    """A method at its best held-out α (or why it could not run): accuracies and paired differences to WiSE-FT."""

    method: str
    alpha: float | None = None
    id: float | None = None
    avg_shifts: float | None = None
    id_vs_wiseft: Paired | None = None
    shifts_vs_wiseft: Paired | None = None
    skipped: str = ""


@dataclass(frozen=True)
class LabelFreeRow:
    """A label-free α for WiSE-FT: the accuracies there, and the distances from the labelled optimum."""

    estimator: str
    alpha: float
    id: float
    avg_shifts: float
    d_alpha: float
    d_id: float
    d_shifts: float
    note: str = ""


@dataclass(frozen=True)
class MethodComparison:
    """The WiSE-FT reference (its best held-out α and what chose it), one row per method, the label-free rows."""

    wiseft: MethodRow
    basis: str
    methods: list[MethodRow]
    label_free: list[LabelFreeRow]


def _paired(a: SweepResult, alpha_a: float, b: SweepResult, alpha_b: float) -> tuple[Paired, Paired]:
    """Per image, a at alpha_a minus b at alpha_b: on the ID set, and averaged over the shifts."""
    def on(name: str) -> Paired:
        here, there = a.predictions[name][alpha_a], b.predictions[name][alpha_b]
        if not torch.equal(here.index, there.index):
            raise ValueError(f"{name}: the two sweeps saw different images; sweep both to the end first")
        return paired_metric(a.set_metrics.get(name, TOP1_METRIC), here, there)

    return on(a.id_set), average_paired([on(s) for s in a.shift_sets])


def _best(result: SweepResult) -> tuple[float, str]:
    choice = alpha_choices(result)[0]
    return choice.alpha, choice.basis


def _method_row(runtime: ExperimentRuntime, name: str, params: Mapping[str, Any], reference: SweepResult,
                ref_alpha: float, cache: DiskCache, alphas: Sequence[float]) -> MethodRow:
    try:
        merged = with_method(runtime, name, params)
        label = merged.choice.label() if hasattr(merged, "choice") else name
        result = run_sweep(merged, alphas, cache=cache)
    except (MergeError, CheckpointError, FileNotFoundError, ValueError) as err:
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        return MethodRow(f"{name} ({shown})" if shown else name, skipped=str(err).splitlines()[0])
    alpha, _ = _best(result)
    id_pair, shift_pair = _paired(result, alpha, reference, ref_alpha)
    return MethodRow(label, alpha, result.top1(result.id_set, alpha), result.avg_shifts(alpha), id_pair, shift_pair)


def _label_free(runtime: ExperimentRuntime, reference: SweepResult, ref_alpha: float,
                cache: DiskCache) -> list[LabelFreeRow]:
    estimates: list[tuple[str, float, str]] = []
    ratio = model_stock_alpha(runtime)
    if ratio is not None:
        estimates.append(("Model Stock ratio t", ratio, "size-weighted mean of the per-tensor t"))
    try:
        mix = dawin_from_sweep(runtime, reference)
        shifts = [dawin_from_sweep(runtime, reference, s).mix_top1 for s in reference.shift_sets]
        estimates.append(("DaWin mean λ", mix.mean_lambda,
                          f"the per-image mix itself: ID {100 * mix.mix_top1:.1f}, "
                          f"avg shifts {100 * sum(shifts) / len(shifts):.1f}"))
    except ValueError as err:
        estimates.append(("DaWin mean λ", math.nan, str(err)))
    best_id, best_shift = reference.top1(reference.id_set, ref_alpha), reference.avg_shifts(ref_alpha)
    rows = []
    for label, alpha, note in estimates:
        if math.isnan(alpha):
            rows.append(LabelFreeRow(label, alpha, math.nan, math.nan, math.nan, math.nan, math.nan, note))
            continue
        with runtime.borrow_working() as working:
            at = evaluate_at(runtime, alpha, working, cache=cache)
        id_top1 = at[reference.id_set].top1
        avg = sum(at[s].top1 for s in reference.shift_sets) / len(reference.shift_sets)
        rows.append(LabelFreeRow(label, alpha, id_top1, avg, alpha - ref_alpha, id_top1 - best_id, avg - best_shift,
                                 note))
    return rows


def compare_methods(runtime: ExperimentRuntime, choices: Sequence[tuple[str, Mapping[str, Any]]] = DEFAULT_CHOICES,
                    cache: DiskCache | None = None, alphas: Sequence[float] = ALPHA_GRID) -> MethodComparison:
    """WiSE-FT and every method in `choices` at their best held-out α, and the label-free α estimates."""
    cache = cache or DiskCache(runtime.experiment.cache_dir)
    reference = run_sweep(runtime, alphas, cache=cache)
    ref_alpha, basis = _best(reference)
    wiseft = MethodRow("wiseft", ref_alpha, reference.top1(reference.id_set, ref_alpha),
                       reference.avg_shifts(ref_alpha))
    rows = [_method_row(runtime, name, params, reference, ref_alpha, cache, alphas) for name, params in choices]
    return MethodComparison(wiseft, basis, rows, _label_free(runtime, reference, ref_alpha, cache))


def _points(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _signed(value: float, scale: float = 100.0, digits: int = 1) -> str:
    return "–" if math.isnan(value) else f"{scale * value:+.{digits}f}"


def _diff(pair: Paired | None) -> str:
    if pair is None:
        return "–"
    error = "" if math.isnan(pair.se) else f" ± {100 * pair.se:.1f}"
    return f"{100 * pair.diff:+.1f}{error}"


def format_comparison_markdown(table: MethodComparison) -> str:
    """Two markdown tables: the methods against WiSE-FT, and the label-free α choices."""
    ref = table.wiseft
    lines = [f"WiSE-FT's best held-out α: {ref.alpha:g} ({table.basis}); differences are paired, per image, "
             "± one standard error, in points.", "",
             "| method | α | ID | avg shifts | ID − WiSE-FT | avg shifts − WiSE-FT |", "|---|---|---|---|---|---|",
             f"| WiSE-FT | {ref.alpha:g} | {_points(ref.id)} | {_points(ref.avg_shifts)} | | |"]
    for row in table.methods:
        if row.skipped:
            lines.append(f"| {row.method} | – | – | – | not run: {row.skipped} | |")
        else:
            lines.append(f"| {row.method} | {row.alpha:g} | {_points(row.id)} | {_points(row.avg_shifts)} | "
                         f"{_diff(row.id_vs_wiseft)} | {_diff(row.shifts_vs_wiseft)} |")
    lines += ["", "| label-free α | α | ID | avg shifts | α − labelled | ID − labelled | avg shifts − labelled | note |",
              "|---|---|---|---|---|---|---|---|"]
    for lf in table.label_free:
        alpha = "–" if math.isnan(lf.alpha) else f"{lf.alpha:.3f}"
        lines.append(f"| {lf.estimator} | {alpha} | {_points(lf.id)} | {_points(lf.avg_shifts)} | "
                     f"{_signed(lf.d_alpha, 1.0, 3)} | {_signed(lf.d_id)} | {_signed(lf.d_shifts)} | {lf.note} |")
    return "\n".join(lines) + "\n"
