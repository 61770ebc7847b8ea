"""The Explorer's figures and table, built once per server for each curves, α and option and shared by sessions.

Building the two plotly figures and the results table was most of a warm page's rerun (about 100 ms of CPU on the
demo), for every visitor and every α change, although everyone in a classroom looks at the same curves at a few
grid values of α. Keys name the curves by identity (state.finished_curves returns one shared object per version
of the curves file; a sweep still running gives new curves at every redraw, which simply miss), plus every other
value the figure is drawn from. The figures are shared: st.plotly_chart only reads them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import pandas as pd
import plotly.graph_objects as go

from ..presentation import cards, plots
from ..results.curves import Curves, alpha_choices
from ..results.robustness import ReferenceLines
from .memo import Memo

_FIGURES = Memo(128)  # about 100 kB each on the demo: 21 grid alphas x a few options x both plots


def shared(key: tuple[Hashable, ...], build: Callable[[], go.Figure | pd.DataFrame | list], keep: tuple[object, ...]):
    """The value built by `build` for `key`, shared by every session (`keep`: the objects `key` names by id)."""
    return _FIGURES.get(key, build, keep)


def endpoint_paths(endpoint: str | None, curves: Curves, others: Mapping[str, Curves]) -> list[plots.ExtraPath]:
    """plots.endpoint_paths, one shared list per curves (so that the figures drawn from it can be shared too)."""
    key = ("paths", endpoint, id(curves), tuple((name, id(other)) for name, other in others.items()))
    return shared(key, lambda: plots.endpoint_paths(endpoint, curves, others), (curves, *others.values()))


def accuracy_figure(curves: Curves, alpha: float, paths: list[plots.ExtraPath]) -> go.Figure:
    """plots.accuracy_vs_alpha of the curves at alpha with their α choices, shared."""
    def build() -> go.Figure:
        choices = {c.key: c.alpha for c in alpha_choices(curves)}
        return plots.accuracy_vs_alpha(curves.table(), curves.sets, alpha, choices, curves.intervals, paths,
                                       curves.id_set, curves.metrics)

    return shared(("accuracy", id(curves), alpha, id(paths)), build, (curves, paths))


def results_table(curves: Curves, lines: ReferenceLines | None) -> pd.DataFrame:
    """cards.results_table, shared (st.table only reads it)."""
    return shared(("table", id(curves), id(lines)), lambda: cards.results_table(curves, lines), (curves, lines))


def waiting_frame() -> go.Figure:
    """The ID-vs-shift plane before the first estimates: its axes and what will appear in it, shared.

    Drawn while a cold start waits for its first round, it also has the browser load and start the charting
    script (about half a second on this project's 2-core machine) while it would otherwise sit idle, instead of
    after the curves arrive."""
    def build() -> go.Figure:
        fig = go.Figure()
        fig.add_annotation(x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 14},
                           text="Each α will be a point here: ID accuracy (x) against accuracy under shift (y)")
        fig.update_layout(height=260, margin={"t": 20, "l": 10, "r": 10, "b": 10},
                          xaxis={"title": "ID accuracy", "range": [0, 100], "ticksuffix": "%"},
                          yaxis={"title": "shift accuracy", "range": [0, 100], "ticksuffix": "%"})
        return fig

    return shared(("waiting",), build, ())


def statistics() -> dict[str, int]:
    """How many figures and tables were built so far (tests count the work a rerun did)."""
    return {"builds": _FIGURES.builds}
