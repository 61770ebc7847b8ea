"""Reference models in the ID-vs-shift plot (the robustness testbed's, or the demo's family of standard
classifiers): grey points by type, the line over the standard models with the 95% bootstrap band, and the words
that say how they were drawn (the plot's help)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..results.curves import AVG_ROW, Curves
from ..results.robustness import BAND_SEED, BOOTSTRAPS, AverageLine, LineFit, ReferenceLines
from ..results.testbed import ReferenceSource
from .plots import scale_value

TESTBED_GROUP = "testbed"  # legend group of every testbed trace (the browser test finds them by it)
LINE_NAME = "testbed line (standard models)"
FAMILY_LINE_NAME = "demo family line (standard classifiers)"
OVERLAY_TOGGLE_HELP = ("The published ImageNet and shift accuracies of 338 models (Taori et al. 2020) as grey points, "
                       "and the line fitted over the standard-training ones with its 95% bootstrap band.")
_GREYS = ("#9a9a9a", "#b5b5b5", "#7d7d7d", "#c8c8c8", "#8a8a8a", "#a8a8a8")
_SYMBOLS = ("circle", "square", "triangle-up", "diamond", "cross", "x", "triangle-down", "pentagon", "hexagon",
            "star-square")


def overlay_words(lines: ReferenceLines) -> tuple[str, str, str]:
    """The overlay's toggle label, the toggle's help and the caption under the plot, for these lines' models."""
    if lines.source.is_testbed:
        return ("Show the robustness testbed's models and line", OVERLAY_TOGGLE_HELP,
                "Grey: the robustness testbed's models; line and band: its fit over standard training.")
    return ("Show the demo family's standard classifiers and line",
            "The demo's own small standard classifiers (trained from scratch on the world's ID photos, no "
            "pretraining) as grey points, and the line fitted over them with its 95% bootstrap band.",
            "Grey: the demo's family of standard classifiers; line and band: their fit.")


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
    """The reference rows as (model, type, x, y) fractions on this plot's axes (the average: mean of the shifts)."""
    frame, id_column = lines.source.frame(), lines.source.id_column
    if shift == AVG_ROW:
        columns = [a.y_column for a in lines.axes]
        rows = frame.dropna(subset=[id_column, *columns])
        x, y = rows[id_column], rows[columns].mean(axis=1)
    else:
        axes = next(a for a in lines.axes if a.set_name == shift)
        x_column = axes.x_column if restricted else id_column
        rows = frame.dropna(subset=[x_column, axes.y_column])
        x, y = rows[x_column], rows[axes.y_column]
    return pd.DataFrame({"model": rows["model"], "type": rows["type"], "x": x / 100, "y": y / 100})


def _names(source: ReferenceSource) -> tuple[str, str, str]:
    """The legend's names: the points' prefix, the band and the line."""
    if source.is_testbed:
        return "testbed: ", "testbed line: 95% bootstrap band", LINE_NAME
    return "", "demo family line: 95% bootstrap band", FAMILY_LINE_NAME


def reference_overlay(curves: Curves, shift: str, lines: ReferenceLines) -> Overlay:
    """Grey reference points by type (one legend entry each, so each can be hidden), the line over the standard
    models, and its 95% band, on the axes the lines were fitted on; the help states the fit's slope and intercept."""
    scale = lines.scale
    restricted = shift != AVG_ROW and lines.line_for(shift, curves)[1]
    fit: LineFit | AverageLine = lines.average if shift == AVG_ROW else (
        lines.own[shift] if restricted else lines.on_id[shift])
    points = _points(shift, lines, restricted)
    prefix, band_name, line_name = _names(lines.source)
    traces = []
    for k, (kind, rows) in enumerate(points.groupby("type", sort=True)):
        traces.append(go.Scatter(
            x=[scale_value(v, scale) for v in rows["x"]], y=[scale_value(v, scale) for v in rows["y"]],
            mode="markers", name=f"{prefix}{kind} ({len(rows)})", legendgroup=TESTBED_GROUP,
            marker={"size": 5, "color": _GREYS[k % len(_GREYS)], "symbol": _SYMBOLS[k % len(_SYMBOLS)]},
            hoverinfo="text", hovertext=[f"{m} ({kind})<br>ID: {100 * x:.1f}%<br>shift: {100 * y:.1f}%"
                                         for m, x, y in zip(rows["model"], rows["x"], rows["y"], strict=True)]))
    grid = np.linspace(max(points["x"].min(), 0.01), min(points["x"].max(), 0.99), 60)
    low, high = fit.band(grid)
    xs = [scale_value(v, scale) for v in grid]
    traces.append(go.Scatter(x=xs + xs[::-1], y=[scale_value(v, scale) for v in [*high, *low[::-1]]],
                             fill="toself", mode="none", fillcolor="rgba(90,90,90,0.18)", hoverinfo="skip",
                             name=band_name, legendgroup=TESTBED_GROUP))
    traces.append(go.Scatter(x=xs, y=[scale_value(v, scale) for v in fit.at(grid)], mode="lines", name=line_name,
                             legendgroup=TESTBED_GROUP, line={"color": "#555555", "width": 2}, hoverinfo="skip"))
    return Overlay(traces, overlay_help(shift, lines, scale, restricted))


def _equation(fit: LineFit, x_name: str) -> str:
    f = "" if fit.scale == "linear" else fit.scale
    dropped = (f" ({', '.join(fit.dropped)} left out: 0% or 100% has no {fit.scale})" if fit.dropped else "")
    return (f"{f}(shift) = {fit.intercept:.4f} + {fit.slope:.4f} · {f}({x_name}): slope {fit.slope:.4f}, "
            f"intercept {fit.intercept:.4f}, over {fit.models} standard models{dropped}")


def _points_text(source: ReferenceSource, scale: str) -> str:
    if source.is_testbed:
        return (f"Grey points: the published accuracies of 338 ImageNet models from {source.description}, by the "
                f"testbed's type (click a type in the legend to hide it). Least squares on {scale} axes over the "
                f"models of type '{source.standard}', as the testbed fits its lines")
    return (f"Grey points: {source.description}; their accuracies on this experiment's sets, at its image counts "
            f"(click them in the legend to hide them). Least squares on {scale} axes over all of them, as the "
            "testbed fits its lines over its standard models")


def overlay_help(shift: str, lines: ReferenceLines, scale: str, restricted: bool) -> str:
    """How the overlay was drawn, with the fitted slope(s) and intercept(s)."""
    id_name = "ImageNet" if lines.source.is_testbed else "ID"
    if shift == AVG_ROW:
        fits = "; ".join(f"{name}: {_equation(fit, id_name)}" for name, fit in
                         zip(lines.on_id, lines.average.fits, strict=True))
        line = (f"The line is the mean of the shifts' lines against {id_name} accuracy, each fitted over the standard "
                f"models that have every shift: {fits}.")
    else:
        x_name = "ImageNet on its classes" if restricted else id_name
        fit = lines.own[shift] if restricted else lines.on_id[shift]
        line = f"The line: {_equation(fit, x_name)}."
        if not restricted and any(a.set_name == shift and a.restricted for a in lines.axes):
            line += (" The testbed plots this shift against ImageNet accuracy on its classes; this sweep has not "
                     "measured that, so it is drawn against all of ImageNet.")
    return (_points_text(lines.source, scale) + "; the band holds 95% of the lines refitted to "
            f"{BOOTSTRAPS:,} bootstrap resamples of those models (seed {BAND_SEED}). {line} Effective robustness "
            "is a model's shift accuracy minus the line at its ID accuracy: points above the line are more robust "
            "than standard training predicts.")
