"""The Explorer's words and numbers: metric cards, the results table, where alpha is, what a cold start is doing.

Each accuracy appears once, on the card of its model; each delta says which two models it compares.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..results.curves import ALPHA_GRID, ALPHA_TOL, AVG_ROW, MIN_DISAGREEING, Curves
from ..results.metrics import MIXED, SHORT, TOP1, metric_title
from ..results.robustness import ReferenceLines, Robustness, curve_robustness, robustness_table

SE_HELP = ("± is the standard error of the difference: both models are scored on the same images, so only the "
           "images they disagree on count. A difference within about twice it could be sampling luck. It is shown "
           f"once {MIN_DISAGREEING} images disagree: before that it would say nothing (± 0.0 when none do yet).")
ENDS = ((0.0, "zero-shot"), (1.0, "fine-tuned"))
GRID_DECIMALS = 2  # the slider's grid is 0.05 apart: two decimals show every grid alpha as it is


@dataclass(frozen=True)
class Card:
    """One metric card: a title, its big number and, for an end model, how alpha compares with it."""

    label: str
    value: str
    help: str
    delta: str | None = None  # "+3.2 pts ± 0.8": alpha minus this card's model
    delta_description: str | None = None  # against what the delta is measured


def points(value: float, error: float | None = None) -> str:
    """A difference of accuracies in percentage points, with its standard error when known."""
    return f"{100 * value:+.1f} pts" + ("" if error is None else f" ± {100 * error:.1f}")


def metric_cards(curves: Curves, alpha: float, acc: dict[str, float], paired: bool = True) -> list[list[Card]]:
    """Rows of cards, ID then the shift average: the model at alpha, then zero-shot and fine-tuned, each accuracy
    once; the end cards carry alpha's difference to them (with its standard error when the sweep has it and `acc`
    is the curves' own: not for a merge method's point, which is another model on a sample)."""
    grid = curves.grid_alpha(alpha) if paired else None
    shifts = ", ".join(curves.shift_sets)
    id_metric, shift_metric = curves.metric(curves.id_set), curves.metric(AVG_ROW)
    rows = [(curves.id_set, _titled("ID", id_metric),
             f"{metric_title(id_metric).capitalize()} on the in-distribution test set **{curves.id_set}**.")]
    if curves.shift_sets:
        mixed = f" (each set in its own metric: {_each(curves)})" if shift_metric == MIXED else ""
        rows.append((AVG_ROW, _titled("Shifts", shift_metric), f"Mean {metric_title(shift_metric)} over the "
                     f"{len(curves.shift_sets)} shift sets: {shifts}{mixed}."))
    cards = []
    for key, title, what in rows:
        errors = curves.error(key, grid) if grid is not None else None
        row = [Card(f"{title} at α = {alpha:g}", f"{100 * acc[key]:.1f}%", f"{what} The model θ_α at α = {alpha:g}.")]
        for k, (end, name) in enumerate(ENDS):
            value = curves.accuracies(end)[key]
            row.append(Card(f"{title}, {name} (α = {end:g})", f"{100 * value:.1f}%",
                            f"{what} The {name} model, α = {end:g}. Its delta is α = {alpha:g} minus it." +
                            (f" {SE_HELP}" if errors else ""),
                            points(acc[key] - value, errors[k] if errors else None), f"α = {alpha:g} vs this"))
        cards.append(row)
    return cards


def _titled(title: str, metric: str) -> str:
    """A card's title: 'ID' for top-1 (as always), 'ID macro F1' for another metric."""
    return title if metric == TOP1 else f"{title} {SHORT.get(metric, metric)}"


def _each(curves: Curves) -> str:
    return ", ".join(f"{s}: {metric_title(curves.metric(s))}" for s in curves.shift_sets)


ER_HELP = ("Effective robustness: shift accuracy minus the robustness testbed's line (fitted on logit axes over its "
           "standard ImageNet models) at the model's ID accuracy, in points; above 0, more robust than standard "
           "training predicts. The shift average is measured against the mean of the shifts' lines. ± is its "
           "standard error: the accuracies' binomial errors from their image counts, and the line's bootstrap "
           "band (its 95% half-width / 1.96).")


def _er_help(lines: ReferenceLines) -> str:
    """ER_HELP, or its words for the demo family's line."""
    if lines.source.is_testbed:
        return ER_HELP
    return ER_HELP.replace("the robustness testbed's line (fitted on logit axes over its standard ImageNet models)",
                           "the line of the demo's family of standard classifiers (fitted on logit axes over them)")


def _er_text(r: Robustness) -> str:
    return points(r.value, r.se)


MERGED_ER_NOTE = ("Effective robustness is shown for the WiSE-FT line only: a merge method's point is measured on a "
                  "sample, without the class views the testbed's axes need for some shifts. Pick wiseft to see it.")


def robustness_cards(curves: Curves, alpha: float, lines: ReferenceLines, merged: bool = False) -> list[Card] | None:
    """The row of effective-robustness cards (average over the testbed's shifts): at alpha, zero-shot and
    fine-tuned, each end with alpha's difference to it; None off the alpha grid (the line needs a sweep's counts)
    and while a merge method is `merged` in (the cards would show the line's value beside the method's point)."""
    grid = curves.grid_alpha(alpha)
    if grid is None or not lines.axes or merged:
        return None
    at = curve_robustness(curves, lines, grid)
    shifts = "; ".join(f"{name}: {_er_text(r)}" for name, r in at.items() if name != AVG_ROW)
    row = [Card(f"Effective robustness at α = {alpha:g}", _er_text(at[AVG_ROW]),
                f"{_er_help(lines)} Per shift at α = {alpha:g}: {shifts}.")]
    for end, name in ENDS:
        theirs = curve_robustness(curves, lines, end)[AVG_ROW]
        row.append(Card(f"Effective robustness, {name} (α = {end:g})", _er_text(theirs),
                        f"{_er_help(lines)} The {name} model, α = {end:g}. Its delta is α = {alpha:g} minus it.",
                        points(at[AVG_ROW].value - theirs.value), f"α = {alpha:g} vs this"))
    return row


def results_table(curves: Curves, lines: ReferenceLines | None = None) -> pd.DataFrame:
    """The results table as shown: accuracies in % with one decimal, alpha as on the grid ("0.05"), as text; with
    the testbed's lines, each shift's effective robustness in points ("ER <set>")."""
    table = curves.table() * 100
    if lines is not None and lines.axes:
        robustness = robustness_table(curves, lines) * 100
        table = table.join(robustness.rename(columns=lambda c: f"ER {c}"))
    shown = table.map(lambda v: f"{v:.1f}")
    shown.index = [grid_text(a) for a in table.index]
    shown.columns = [c if curves.metric(c) == TOP1 else f"{c} ({SHORT.get(curves.metric(c), curves.metric(c))})"
                     for c in shown.columns]
    shown.index.name = "α"
    return shown


def grid_text(alpha: float) -> str:
    """A grid alpha as the slider writes it (two decimals)."""
    return f"{alpha:.{GRID_DECIMALS}f}"


def alpha_position(alpha: float) -> str | None:
    """Where alpha lies when the grid slider cannot show it (off its grid or outside 0..1), else None."""
    if any(abs(alpha - a) < ALPHA_TOL for a in ALPHA_GRID):
        return None
    if alpha < ALPHA_GRID[0] or alpha > ALPHA_GRID[-1]:
        side, end = ("below", "zero-shot") if alpha < ALPHA_GRID[0] else ("above", "fine-tuned")
        edge = ALPHA_GRID[0] if alpha < ALPHA_GRID[0] else ALPHA_GRID[-1]
        return (f"α = {alpha:g} lies {side} the slider's range: extrapolated {abs(alpha - edge):g} beyond the "
                f"{end} model (α = {edge:g}). The slider rests at {grid_text(edge)}.")
    low = max(a for a in ALPHA_GRID if a < alpha)
    high = min(a for a in ALPHA_GRID if a > alpha)
    nearest = low if alpha - low <= high - alpha else high
    return (f"α = {alpha:g} lies between the grid values {grid_text(low)} and {grid_text(high)}: the slider rests "
            f"at the nearest, {grid_text(nearest)}; every number below is at α = {alpha:g}.")


COLD_START = ("First start of this experiment: loading the models, then evaluating the first images of every set at "
              "every α. The curves appear in a few seconds and sharpen while the rest streams in; later starts draw "
              "the stored curves at once.")


def same_model_note(curves: Curves) -> str | None:
    """Why the weight-space and output-space curves coincide, when they do (every set, every alpha).

    With only a linear head fine-tuned, both models share the image tower f and θ_α's logits are
    f·((1 − α)·W₀ + α·W₁)ᵀ = (1 − α)·logits₀ + α·logits₁: the output ensemble and θ_α are one model.
    """
    ensemble = curves.ensemble_curves()
    if ensemble is None:
        return None
    for name, by_alpha in curves.top1s.items():
        n = curves.counts.get(name, (0, 0))[0]
        tolerance = 0.5 / n if n else 1e-9  # less than one image apart: the same predictions up to rounding
        if any(abs(by_alpha[a] - ensemble.top1s.get(name, {}).get(a, -1.0)) > tolerance for a in by_alpha):
            return None
    return ("The dashed output ensemble lies on the WiSE-FT path: when only the linear head was fine-tuned, both "
            "models share the image tower, so mixing the heads' weights is exactly mixing their outputs — the same "
            "model. The two part ways for an end-to-end fine-tuned model.")
