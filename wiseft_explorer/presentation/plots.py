"""Plotly figures: ID vs shift accuracy (the paper's plot), accuracy vs alpha, class probability vs alpha."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go

from ..results.curves import CHOICE_LABELS
from ..results.metrics import axis_title, metric_title
from .paper import ReferencePoint

if TYPE_CHECKING:
    from ..results.curves import Curves

SCALES = ("linear", "logit", "probit")
CURRENT = "current α"  # trace name of the highlighted alpha (tests and the browser look it up by name)
_EPS = 1e-3  # accuracies of exactly 0 or 1 have no logit/probit; clip them just inside
_TICKS = (1, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 98, 99, 99.5, 99.9)
CURRENT_COLOR = "#d62728"  # the current alpha's red, in every figure; no curve is drawn in it
_PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7b4173")


def scale_value(p: float, scale: str) -> float:
    """Map an accuracy fraction to the axis coordinate of a linear (percent), logit or probit scale."""
    if scale == "linear":
        return 100.0 * p
    p = min(max(p, _EPS), 1 - _EPS)
    if scale == "logit":
        return math.log(p / (1 - p))
    if scale == "probit":
        return NormalDist().inv_cdf(p)
    raise ValueError(f"unknown axis scale {scale!r}; use one of {SCALES}")


def _axis(title: str, values: Sequence[float], scale: str) -> dict:
    """Axis settings: percent ticks placed at their transformed positions, so a logit axis still reads in %."""
    axis: dict = {"title": title, "zeroline": False}
    if scale == "linear" or not values:
        axis["ticksuffix"] = "%" if scale == "linear" else ""
        return axis
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.15, 0.05)
    ticks = [t for t in _TICKS if lo - pad <= scale_value(t / 100, scale) <= hi + pad]
    if len(ticks) < 2:  # a narrow range: fall back to a few ticks inside the data
        ticks = sorted({round(100 * p, 1) for p in _inverse(values, scale)})
    axis.update(tickvals=[scale_value(t / 100, scale) for t in ticks], ticktext=[f"{t:g}%" for t in ticks],
                range=[lo - pad, hi + pad])
    return axis


def _inverse(values: Sequence[float], scale: str) -> list[float]:
    """Accuracy fractions back from logit/probit coordinates (only for tick fallbacks)."""
    if scale == "logit":
        return [1 / (1 + math.exp(-v)) for v in values]
    return [NormalDist().cdf(v) for v in values]


Intervals = Mapping[str, Mapping[float, tuple[float, float]]]  # set -> alpha -> (low, high) accuracy fractions


def _bars(values: Sequence[float], bounds: Sequence[tuple[float, float] | None], scale: str) -> dict | None:
    """Asymmetric plotly error bars for values whose 95% intervals are given (in the axis' scale)."""
    known = [b for b in bounds if b is not None]
    if not bounds or len(known) < len(bounds):
        return None
    plus = [scale_value(hi, scale) - scale_value(v, scale) for v, (_, hi) in zip(values, known, strict=True)]
    minus = [scale_value(v, scale) - scale_value(lo, scale) for v, (lo, _) in zip(values, known, strict=True)]
    return {"type": "data", "symmetric": False, "array": plus, "arrayminus": minus, "thickness": 1, "width": 2,
            "color": "#aaaaaa"}


@dataclass(frozen=True)
class ExtraPath:
    """Another curve over the alpha grid beside the chosen WiSE-FT path: another endpoint's, or an output ensemble."""

    name: str
    table: pd.DataFrame  # index alpha, accuracy fractions per set and avg_shifts (Curves.table())
    color: str
    dash: str = "solid"
    endpoint_marker: bool = False  # mark its alpha = 1 end (another fine-tuned model)
    axis: str = "α"  # what the table's index is (LiNeS' β path runs along β)


_OTHER_COLORS = ("#17becf", "#bcbd22", "#393b79", "#843c39")  # not among the sets' colours
ENSEMBLE_PREFIX = "output ensemble"  # legend names of the output-space curves start with it


def endpoint_paths(endpoint: str | None, curves: Curves, others: Mapping[str, Curves]) -> list[ExtraPath]:
    """The lines beside the chosen WiSE-FT path: its output-space ensemble, then every other endpoint's path and
    ensemble."""
    paths = []
    ensemble = curves.ensemble_curves()
    if ensemble is not None:
        paths.append(ExtraPath(f"{ENSEMBLE_PREFIX}: {endpoint or 'fine-tuned'}", ensemble.table(), "#444444", "dash"))
    for k, (name, other) in enumerate(others.items()):
        color = _OTHER_COLORS[k % len(_OTHER_COLORS)]
        paths.append(ExtraPath(f"WiSE-FT path: {name}", other.table(), color, endpoint_marker=True))
        other_ensemble = other.ensemble_curves()
        if other_ensemble is not None:
            paths.append(ExtraPath(f"{ENSEMBLE_PREFIX}: {name}", other_ensemble.table(), color, "dot"))
    return paths


def _extra_paths(fig: go.Figure, paths: Sequence[ExtraPath], id_col: str, shift_col: str, scale: str,
                 shift_label: str) -> tuple[list[float], list[float]]:
    """Draw the extra paths into the ID-vs-shift plot; their points (for the axes' ranges)."""
    xs_all: list[float] = []
    ys_all: list[float] = []
    for path in paths:
        alphas = [float(a) for a in path.table.index]
        xs = [scale_value(v, scale) for v in path.table[id_col]]
        ys = [scale_value(v, scale) for v in path.table[shift_col]]
        hover = [f"{path.name}<br>{path.axis} = {a:.2f}<br>ID: {100 * i:.1f}%<br>{shift_label}: {100 * v:.1f}%"
                 for a, i, v in zip(alphas, path.table[id_col], path.table[shift_col], strict=True)]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=path.name, hovertext=hover,
                                 hoverinfo="text", customdata=alphas, marker={"size": 4, "color": path.color},
                                 line={"color": path.color, "dash": path.dash}))
        if path.endpoint_marker and 1.0 in alphas:
            k = alphas.index(1.0)
            fig.add_trace(go.Scatter(x=[xs[k]], y=[ys[k]], mode="markers", name=f"{path.name} (α = 1)",
                                     hovertext=[hover[k]], hoverinfo="text", showlegend=False,
                                     marker={"symbol": "diamond", "size": 14, "color": path.color}))
        xs_all, ys_all = xs_all + xs, ys_all + ys
    return xs_all, ys_all


def id_vs_shift(table: pd.DataFrame, id_col: str, shift_col: str, alpha: float,
                current: tuple[float, float] | None = None, scale: str = "linear",
                reference: Sequence[ReferencePoint] = (), shift_label: str | None = None,
                intervals: Intervals | None = None, label: str | None = None,
                paths: Sequence[ExtraPath] = (), metrics: tuple[str, str] = ("top1", "top1"),
                under: Sequence[go.Scatter] = (), id_label: str | None = None) -> go.Figure:
    """The paper's plot: the WiSE-FT path over the alpha grid, zero-shot star, fine-tuned diamond, current alpha.

    `table` is SweepResult.table() (index alpha, accuracy fractions); `current` is (ID, shift) at alpha when alpha
    is not on the grid; `intervals` (95%, per set and alpha) become error bars in both directions; `label` names
    the path's fine-tuned endpoint; `paths` are drawn beside it (other endpoints, output-space ensembles);
    `metrics` name what the two axes show (Curves.metric of the two columns); `under` are drawn first, beneath
    everything (the robustness testbed's overlay); `id_label` replaces the x-axis title (e.g. on a shift's classes).
    """
    shift_label = shift_label or ("average over shifts" if shift_col == "avg_shifts" else shift_col)
    alphas = [float(a) for a in table.index]
    xs = [scale_value(v, scale) for v in table[id_col]]
    ys = [scale_value(v, scale) for v in table[shift_col]]
    hover = [f"α = {a:.2f}<br>ID: {100 * i:.1f}%<br>{shift_label}: {100 * s:.1f}%"
             for a, i, s in zip(alphas, table[id_col], table[shift_col], strict=True)]
    intervals = intervals or {}
    error_x = _bars(list(table[id_col]), [intervals.get(id_col, {}).get(a) for a in alphas], scale)
    error_y = _bars(list(table[shift_col]), [intervals.get(shift_col, {}).get(a) for a in alphas], scale)
    fig = go.Figure(list(under))
    name = f"WiSE-FT path: {label}" if label else "WiSE-FT path (α grid)"
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, customdata=alphas,
                             hovertext=hover, hoverinfo="text", line={"color": "#7f7f7f"}, marker={"size": 6},
                             error_x=error_x, error_y=error_y))
    for end, name, symbol, color in ((0.0, "zero-shot (α = 0)", "star", "#ff7f0e"),
                                     (1.0, "fine-tuned (α = 1)", "diamond", "#1f77b4")):
        if end in alphas:
            k = alphas.index(end)
            fig.add_trace(go.Scatter(x=[xs[k]], y=[ys[k]], mode="markers", name=name, hovertext=[hover[k]],
                                     hoverinfo="text", marker={"symbol": symbol, "size": 18, "color": color}))
    if current is None:
        k = min(range(len(alphas)), key=lambda i: abs(alphas[i] - alpha))
        current = (float(table[id_col].iloc[k]), float(table[shift_col].iloc[k]))
    cx, cy = scale_value(current[0], scale), scale_value(current[1], scale)
    fig.add_trace(go.Scatter(x=[cx], y=[cy], mode="markers", name=CURRENT, customdata=[alpha],
                             hovertext=[f"current α = {alpha:g}<br>ID: {100 * current[0]:.1f}%<br>"
                                        f"{shift_label}: {100 * current[1]:.1f}%"], hoverinfo="text",
                             marker={"size": 20, "color": "rgba(214,39,40,0.25)",
                                     "line": {"color": CURRENT_COLOR, "width": 3}}))
    extra_x, extra_y = _extra_paths(fig, paths, id_col, shift_col, scale, shift_label)
    xs_all, ys_all = xs + [cx] + extra_x, ys + [cy] + extra_y
    for trace in under:
        xs_all, ys_all = xs_all + [v for v in trace.x if v is not None], ys_all + [v for v in trace.y if v is not None]
    for model in dict.fromkeys(p.model for p in reference):
        rows = [p for p in reference if p.model == model]
        px = [scale_value(p.id_acc / 100, scale) for p in rows]
        py = [scale_value(p.avg_shifts / 100, scale) for p in rows]
        xs_all, ys_all = xs_all + px, ys_all + py
        fig.add_trace(go.Scatter(x=px, y=py, mode="markers", name=f"paper: {model} ({rows[0].source})",
                                 marker={"symbol": "x", "size": 10}, hoverinfo="text",
                                 hovertext=[f"{p.model}, {p.label}<br>ImageNet: {p.id_acc}%<br>"
                                            f"avg of 5 shifts: {p.avg_shifts}%<br>paper {p.source}" for p in rows]))
    fig.update_layout(xaxis=_axis(id_label or f"ID {axis_title(metrics[0])}", xs_all, scale),
                      yaxis=_axis(f"Shift {axis_title(metrics[1])} ({shift_label})", ys_all, scale),
                      legend={"orientation": "h", "yanchor": "top", "y": -0.15}, margin={"t": 30, "l": 10, "r": 10},
                      height=480 + 22 * ((len(paths) + len(under)) // 2))
    return fig


def _band(fig: go.Figure, alphas: list[float], bounds: Mapping[float, tuple[float, float]], color: str,
          group: str) -> None:
    """A shaded 95% band around one curve (drawn under it, no legend entry of its own)."""
    if not all(a in bounds for a in alphas):
        return
    xs = alphas + alphas[::-1]
    ys = [100 * bounds[a][1] for a in alphas] + [100 * bounds[a][0] for a in alphas[::-1]]
    fig.add_trace(go.Scatter(x=xs, y=ys, fill="toself", mode="none", fillcolor=color, opacity=0.15,
                             legendgroup=group, showlegend=False, hoverinfo="skip", name=f"{group} (95% interval)"))


ROW_PX = 16  # height of one row of alpha labels above the accuracy-vs-alpha plot


def accuracy_vs_alpha(table: pd.DataFrame, sets: Sequence[str], alpha: float,
                      choices: Mapping[str, float] | None = None, intervals: Intervals | None = None,
                      paths: Sequence[ExtraPath] = (), id_col: str | None = None,
                      metrics: Mapping[str, str] | None = None) -> go.Figure:
    """Top-1 of every set over alpha (with 95% bands when given), the shift average dashed, the current alpha.

    `metrics` (Curves.metrics): the sets scored by another metric than top-1, named in the legend and the axis.

    `paths` add the ID (`id_col`) and shift-average lines of other endpoints or output-space ensembles.
    """
    fig, metrics = go.Figure(), metrics or {}
    alphas = [float(a) for a in table.index]
    for i, name in enumerate(sets):
        color = _PALETTE[i % len(_PALETTE)]
        if intervals and name in intervals:
            _band(fig, alphas, intervals[name], color, name)
        shown = name if metrics.get(name, "top1") == "top1" else f"{name} ({metric_title(metrics[name])})"
        fig.add_trace(go.Scatter(x=alphas, y=[100 * v for v in table[name]], mode="lines+markers", name=shown,
                                 line={"color": color}, marker={"size": 5}, legendgroup=name,
                                 hovertemplate=f"{name}<br>α = %{{x:.2f}}<br>%{{y:.1f}}%<extra></extra>"))
    if "avg_shifts" in table:
        fig.add_trace(go.Scatter(x=alphas, y=[100 * v for v in table["avg_shifts"]], mode="lines", name="avg shifts",
                                 line={"color": "black", "dash": "dash", "width": 3},
                                 hovertemplate="avg shifts<br>α = %{x:.2f}<br>%{y:.1f}%<extra></extra>"))
    for path in paths:
        xs = [float(a) for a in path.table.index]
        for column, width, suffix in ((id_col, 2, "ID"), ("avg_shifts", 3, "avg shifts")):
            if column in path.table:
                fig.add_trace(go.Scatter(x=xs, y=[100 * v for v in path.table[column]], mode="lines",
                                         name=f"{path.name}: {suffix}", legendgroup=path.name,
                                         line={"color": path.color, "dash": path.dash, "width": width},
                                         hovertemplate=f"{path.name}, {suffix}<br>α = %{{x:.2f}}<br>"
                                                       "%{y:.1f}%<extra></extra>"))
    by_alpha: dict[float, list[str]] = {}
    for key, value in (choices or {}).items():
        by_alpha.setdefault(float(value), []).append(CHOICE_LABELS.get(key, key))
    # Every label gets its own row above the plot area: inside it they covered the curves and each other.
    rows = [(value, " · ".join(labels), "#555") for value, labels in sorted(by_alpha.items())]
    rows.append((alpha, f"current α = {alpha:g}", CURRENT_COLOR))
    for k, (value, text, color) in enumerate(rows):
        if color != CURRENT_COLOR:
            fig.add_vline(x=value, line={"color": "#888", "dash": "dot", "width": 1})
        # Labels near an edge hang inwards from their line so they stay inside the figure.
        fig.add_annotation(x=value, y=1.0, yref="paper", yanchor="bottom", yshift=2 + ROW_PX * k, text=text,
                           showarrow=False, xanchor="right" if value >= 0.75 else "left" if value <= 0.25 else "center",
                           font={"size": 11, "color": color}, bgcolor="rgba(255,255,255,0.85)")
    fig.add_vline(x=alpha, line={"color": CURRENT_COLOR, "width": 3}, name=CURRENT)
    lo, hi = min(alphas + [alpha]), max(alphas + [alpha])
    fig.update_layout(xaxis={"title": "α (0 = zero-shot, 1 = fine-tuned)", "range": [lo - 0.03, hi + 0.03]},
                      yaxis={"title": _alpha_axis(sets, metrics), "ticksuffix": "%"},
                      # Anchored by its top below the axis title: with more curves the legend grows downwards
                      # (the figure with it) instead of up over the title.
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2},
                      height=420 + 22 * ((len(fig.data) + 2) // 3),
                      margin={"t": 12 + ROW_PX * len(rows), "l": 10, "r": 10})
    return fig


def _alpha_axis(sets: Sequence[str], metrics: Mapping[str, str]) -> str:
    names = {metrics.get(s, "top1") for s in sets}
    return metric_title(names.pop()) if len(names) == 1 else "each set's metric (named in the legend)"


def current_alpha_of(fig: go.Figure) -> float | None:
    """The alpha a figure marks as current (the red vertical line or the highlighted point)."""
    for shape in fig.layout.shapes:
        if shape.name == CURRENT:
            return float(shape.x0)
    for trace in fig.data:
        if trace.name == CURRENT:
            return float(trace.customdata[0])
    return None


def probability_vs_alpha(frame: pd.DataFrame, alpha: float | None = None, true_class: str | None = None) -> go.Figure:
    """One image's class probabilities over alpha (frame from predict.curve_frame); the true class drawn thick.
    Redrawn at every α change of the Upload page: one constructor call, nothing validated (either cost 2x)."""
    traces = [{"type": "scatter", "x": rows["alpha"].tolist(), "y": rows["probability"].tolist(), "mode": "lines",
               "name": name + (" (true)" if name == true_class else ""),
               "line": {"width": 4 if name == true_class else 2, "color": _PALETTE[i % len(_PALETTE)]},
               "hovertemplate": f"{name}<br>α = %{{x:.2f}}<br>p = %{{y:.3f}}<extra></extra>"}
              for i, (name, rows) in enumerate(frame.groupby("class", sort=False))]
    layout: dict = {"xaxis": {"title": {"text": "α"}}, "yaxis": {"title": {"text": "probability"}, "range": [0, 1.02]},
                    "height": 300, "margin": {"t": 20, "l": 10, "r": 10, "b": 10}, "legend": {"font": {"size": 10}}}
    if alpha is not None:  # what add_vline draws: a dashed line over the plot's height, labelled at its top
        layout["shapes"] = [{"type": "line", "name": CURRENT, "x0": alpha, "x1": alpha, "xref": "x", "y0": 0,
                             "y1": 1, "yref": "y domain", "line": {"color": CURRENT_COLOR, "width": 2, "dash": "dash"}}]
        layout["annotations"] = [{"x": alpha, "xref": "x", "y": 1, "yref": "y domain", "text": f"α = {alpha:g}",
                                  "showarrow": False, "xanchor": "left", "yanchor": "top",
                                  "font": {"color": CURRENT_COLOR}}]
    return go.Figure(data=traces, layout=layout, _validate=False)  # in validated form (tests/test_memo.py)
