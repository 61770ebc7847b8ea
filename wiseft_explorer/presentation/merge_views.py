"""What the Explorer draws of a merge method: its path and point beside WiSE-FT's, Model Stock's per-layer t,
LiNeS' α per depth and its β path, and the label-free α choices against the labelled ones (torch-free)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from ..results.curves import AVG_ROW, Curves, alpha_choices
from .plots import ExtraPath

METHOD_COLOR = "#d62728"  # the chosen method's path and point
BETA_COLOR = "#9467bd"  # LiNeS' β path
LABEL_FREE_COLORS = ("#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class MethodDrawing:
    """A method's path on a fair sample (`curves`, over PATH_ALPHAS and α) and the session's α on it."""

    title: str
    curves: Curves
    alpha: float
    images: int  # per set
    values: str = ""  # the controls' values in words, e.g. "β = 0.3"

    @property
    def accuracies(self) -> dict[str, float]:
        """Every drawn set's accuracy and the shift average at the session's α (the cards' numbers)."""
        grid = self.curves.grid_alpha(self.alpha)
        assert grid is not None  # the path is evaluated at the session's α too
        return self.curves.accuracies(grid)

    def paths(self) -> list[ExtraPath]:
        """The method's path (its α = 1 end marked) and its point at α."""
        point = self.curves.table().loc[[self.curves.grid_alpha(self.alpha)]]
        shown = f" ({self.values})" if self.values else ""
        return [ExtraPath(f"{self.title} path{shown}", self.curves.table(), METHOD_COLOR, "dashdot",
                          endpoint_marker=True),
                ExtraPath(f"{self.title} at α = {self.alpha:g}{shown}", point, METHOD_COLOR)]

    def caption(self) -> str:
        """What the cards and the red path are."""
        acc = self.accuracies
        return (f"Red: **{self.title}**, α from θ₀ (0) to the method's point (1), evaluated on the first "
                f"{self.images} images of each set (a fair sample). At α = {self.alpha:g} it scores "
                f"{100 * acc[self.curves.id_set]:.1f}% ID and {100 * acc[AVG_ROW]:.1f}% on the shifts; the cards "
                "show it, the grey path is WiSE-FT over every image.")


def beta_path(title: str, by_beta: Mapping[float, Mapping[str, float]]) -> ExtraPath:
    """LiNeS at the current α for each β, as a path (its index is β)."""
    table = pd.DataFrame([{"beta": b, **acc} for b, acc in sorted(by_beta.items())]).set_index("beta")
    return ExtraPath(title, table, BETA_COLOR, "dot", axis="β")


def ratio_figure(ratios: Mapping[str, float], overall: float | None = None) -> go.Figure:
    """Model Stock's t per tensor (layout order) as bars, with the size-weighted mean as a line."""
    names = list(ratios)
    fig = go.Figure(go.Bar(x=list(range(len(names))), y=list(ratios.values()), hovertext=names, hoverinfo="text+y",
                           marker={"color": METHOD_COLOR}, name="t per tensor"))
    if overall is not None:
        fig.add_hline(y=overall, line={"dash": "dash", "color": "#444444"},
                      annotation_text=f"mean t = {overall:.3f}")
    fig.update_layout(height=260, margin={"l": 40, "r": 10, "t": 30, "b": 40}, title="Model Stock: t per tensor",
                      xaxis_title="tensor (stem → head)", yaxis_title="t", showlegend=False)
    return fig


def depth_figure(labels: Sequence[str], alphas: Sequence[float]) -> go.Figure:
    """α per depth group (LiNeS' line, or the expert view's values)."""
    fig = go.Figure(go.Scatter(x=list(labels), y=list(alphas), mode="lines+markers", marker={"color": BETA_COLOR}))
    fig.update_layout(height=240, margin={"l": 40, "r": 10, "t": 30, "b": 40}, title="α per depth",
                      yaxis_title="α(ℓ)", showlegend=False)
    return fig


def _nearest(curves: Curves, alpha: float) -> float:
    return min(curves.alphas, key=lambda a: abs(a - alpha))


def label_free_paths(curves: Curves, choices: Sequence[tuple[str, float]]) -> list[ExtraPath]:
    """A marker per label-free α on the WiSE-FT path (at the nearest grid α)."""
    table = curves.table()
    return [ExtraPath(f"label-free: {label} (α ≈ {_nearest(curves, alpha):g})",
                      table.loc[[_nearest(curves, alpha)]], LABEL_FREE_COLORS[k % len(LABEL_FREE_COLORS)])
            for k, (label, alpha) in enumerate(choices)]


def label_free_table(curves: Curves, choices: Sequence[tuple[str, float]]) -> pd.DataFrame:
    """The labelled choices and the label-free ones: α, the grid α read, ID and shift accuracy (%), and the distance
    from the labelled optimum (the best held-out ID α) in points."""
    labelled = alpha_choices(curves)
    best = curves.accuracies(labelled[0].alpha)
    rows = []
    for label, alpha in [(c.label, c.alpha) for c in labelled] + list(choices):
        grid = _nearest(curves, alpha)
        acc = curves.accuracies(grid)
        rows.append({"choice": label, "α": round(alpha, 3), "grid α": grid,
                     "ID %": round(100 * acc[curves.id_set], 1), "shifts %": round(100 * acc[AVG_ROW], 1),
                     "Δ ID (pts)": round(100 * (acc[curves.id_set] - best[curves.id_set]), 1),
                     "Δ shifts (pts)": round(100 * (acc[AVG_ROW] - best[AVG_ROW]), 1)})
    return pd.DataFrame(rows).set_index("choice")


def landing_caption(drawing: MethodDrawing, curves: Curves) -> str:
    """Where the method's point (α = 1 on its path) lands, beside WiSE-FT at its labelled best α."""
    best = alpha_choices(curves)[0]
    own, line = drawing.curves.accuracies(1.0), curves.accuracies(best.alpha)
    return (f"{drawing.title} lands (α = 1, the ◆ on its path) at {100 * own[curves.id_set]:.1f}% ID and "
            f"{100 * own[AVG_ROW]:.1f}% on the shifts (sample); WiSE-FT at its labelled best α = {best.alpha:g} "
            f"({best.basis}) scores {100 * line[curves.id_set]:.1f}% and {100 * line[AVG_ROW]:.1f}%.")
