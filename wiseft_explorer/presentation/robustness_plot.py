"""The robustness testbed in the ID-vs-shift plot: its models as grey points by type, the line over its standard
models with the 95% bootstrap band, and the words that say how they were drawn (the plot's help)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..results.curves import AVG_ROW, Curves
from ..results.robustness import BAND_SEED, BOOTSTRAPS, AverageLine, LineFit, ReferenceLines
from ..results.testbed import ID_COLUMN, STANDARD, TESTBED_SOURCE, load_testbed
from .plots import scale_value

TESTBED_GROUP = "testbed"  # legend group of every testbed trace (the browser test finds them by it)
LINE_NAME = "testbed line (standard models)"
OVERLAY_TOGGLE_HELP = ("The published ImageNet and shift accuracies of 338 models (Taori et al. 2020) as grey points, "
                       "and the line fitted over the standard-training ones with its 95% bootstrap band.")
_GREYS = ("#9a9a9a", "#b5b5b5", "#7d7d7d", "#c8c8c8", "#8a8a8a", "#a8a8a8")
_SYMBOLS = ("circle", "square", "triangle-up", "diamond", "cross", "x", "triangle-down", "pentagon", "hexagon",
            "star-square")


@dataclass(frozen=True)
class Overlay:
    """What the overlay adds to the plot: traces (drawn under the WiSE-FT path) and the help that explains them."""

    traces: list[go.Scatter]
    help: str


def plot_table(curves: Curves, shift: str, lines: ReferenceLines) -> tuple[pd.DataFrame, bool]:
    """The curves' table with the ID column as the testbed plots this shift against: ImageNet on its classes
    for R, A and ObjectNet when the sweep measured it (True), else unchanged (False)."""
    table = curves.table()
    if shift == AVG_ROW or shift not in lines.own or not lines.line_for(shift, curves)[1]:
        return table, False
    restricted = curves.id_on_classes[shift]
    table[curves.id_set] = [restricted[a] for a in table.index]
    return table, True


def _points(shift: str, lines: ReferenceLines, restricted: bool) -> pd.DataFrame:
    """The testbed's rows as (model, type, x, y) fractions on this plot's axes (the average: mean of the shifts)."""
    frame = load_testbed()
    if shift == AVG_ROW:
        columns = [a.y_column for a in lines.axes]
        rows = frame.dropna(subset=[ID_COLUMN, *columns])
        x, y = rows[ID_COLUMN], rows[columns].mean(axis=1)
    else:
        axes = next(a for a in lines.axes if a.set_name == shift)
        x_column = axes.x_column if restricted else ID_COLUMN
        rows = frame.dropna(subset=[x_column, axes.y_column])
        x, y = rows[x_column], rows[axes.y_column]
    return pd.DataFrame({"model": rows["model"], "type": rows["type"], "x": x / 100, "y": y / 100})


def reference_overlay(curves: Curves, shift: str, lines: ReferenceLines) -> Overlay:
    """Grey testbed points by type (one legend entry each, so each can be hidden), the line over the standard
    models, and its 95% band, on the axes the lines were fitted on; the help states the fit's slope and intercept."""
    scale = lines.scale
    restricted = shift != AVG_ROW and lines.line_for(shift, curves)[1]
    fit: LineFit | AverageLine = lines.average if shift == AVG_ROW else (
        lines.own[shift] if restricted else lines.on_id[shift])
    points = _points(shift, lines, restricted)
    traces = []
    for k, (kind, rows) in enumerate(points.groupby("type", sort=True)):
        traces.append(go.Scatter(
            x=[scale_value(v, scale) for v in rows["x"]], y=[scale_value(v, scale) for v in rows["y"]],
            mode="markers", name=f"testbed: {kind} ({len(rows)})", legendgroup=TESTBED_GROUP,
            marker={"size": 5, "color": _GREYS[k % len(_GREYS)], "symbol": _SYMBOLS[k % len(_SYMBOLS)]},
            hoverinfo="text", hovertext=[f"{m} ({kind})<br>ID: {100 * x:.1f}%<br>shift: {100 * y:.1f}%"
                                         for m, x, y in zip(rows["model"], rows["x"], rows["y"], strict=True)]))
    grid = np.linspace(max(points["x"].min(), 0.01), min(points["x"].max(), 0.99), 60)
    low, high = fit.band(grid)
    xs = [scale_value(v, scale) for v in grid]
    traces.append(go.Scatter(x=xs + xs[::-1], y=[scale_value(v, scale) for v in [*high, *low[::-1]]],
                             fill="toself", mode="none", fillcolor="rgba(90,90,90,0.18)", hoverinfo="skip",
                             name="testbed line: 95% bootstrap band", legendgroup=TESTBED_GROUP))
    traces.append(go.Scatter(x=xs, y=[scale_value(v, scale) for v in fit.at(grid)], mode="lines", name=LINE_NAME,
                             legendgroup=TESTBED_GROUP, line={"color": "#555555", "width": 2}, hoverinfo="skip"))
    return Overlay(traces, overlay_help(shift, lines, scale, restricted))


def _equation(fit: LineFit, x_name: str) -> str:
    f = "" if fit.scale == "linear" else fit.scale
    dropped = (f" ({', '.join(fit.dropped)} left out: 0% or 100% has no {fit.scale})" if fit.dropped else "")
    return (f"{f}(shift) = {fit.intercept:.4f} + {fit.slope:.4f} · {f}({x_name}): slope {fit.slope:.4f}, "
            f"intercept {fit.intercept:.4f}, over {fit.models} standard models{dropped}")


def overlay_help(shift: str, lines: ReferenceLines, scale: str, restricted: bool) -> str:
    """How the overlay was drawn, with the fitted slope(s) and intercept(s)."""
    if shift == AVG_ROW:
        fits = "; ".join(f"{name}: {_equation(fit, 'ImageNet')}" for name, fit in
                         zip(lines.on_id, lines.average.fits, strict=True))
        line = ("The line is the mean of the shifts' lines against ImageNet accuracy, each fitted over the standard "
                f"models that have every shift: {fits}.")
    else:
        x_name = "ImageNet on its classes" if restricted else "ImageNet"
        fit = lines.own[shift] if restricted else lines.on_id[shift]
        line = f"The line: {_equation(fit, x_name)}."
        if not restricted and any(a.set_name == shift and a.restricted for a in lines.axes):
            line += (" The testbed plots this shift against ImageNet accuracy on its classes; this sweep has not "
                     "measured that, so it is drawn against all of ImageNet.")
    return (f"Grey points: the published accuracies of 338 ImageNet models from {TESTBED_SOURCE}, by the testbed's "
            f"type (click a type in the legend to hide it). Least squares on {scale} axes over the models of type "
            f"'{STANDARD}', as the testbed fits its lines; the band holds 95% of the lines refitted to "
            f"{BOOTSTRAPS:,} bootstrap resamples of those models (seed {BAND_SEED}). {line} Effective robustness "
            "is a model's shift accuracy minus the line at its ID accuracy: points above the line are more robust "
            "than standard training predicts.")
