"""The Explorer page: warm or cold start, metric cards, the ID-vs-shift plot, accuracy vs alpha, the explainer."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ..experiment.spec import Experiment
from ..presentation import cards, paper, plots, robustness_plot
from ..presentation.merge_views import MethodDrawing
from ..results.curves import Curves, alpha_choices
from ..results.robustness import ReferenceLines, reference_lines
from ..results.testbed import experiment_axes, no_testbed_reason
from . import endpoints, figures, merge_panel, sidebar, state
from .errors import shown_errors

TABLE_KEY = "results_table_open"  # the results table's box: open or not, this session
EXPLAINER = """
**Two models, one line between them.** A *zero-shot* model (α = 0) was pretrained on image–caption pairs and
classifies by comparing an image with the text "a photo of a {class}". It has never seen our training set, and it
is remarkably robust: its accuracy holds up on unusual images (sketches, cartoons, clutter).
A *fine-tuned* model (α = 1) is the same network trained further on the in-distribution (ID) training set. It
is better on ID images, but often *worse* than zero-shot under distribution shift.

**WiSE-FT** (weight-space ensembling) does not average the two models' predictions: it averages their
*weights*, θ_α = (1 − α)·θ_zero-shot + α·θ_fine-tuned, giving one ordinary model at each α, no slower than
either end.

**What to look for.**
- In the *ID vs shift* plot each dot is one α. The ★ is zero-shot, the ◆ is fine-tuned. If the path bulges
  *up and to the right* of the straight line between them, intermediate α beats both ends: better ID accuracy
  **and** better shift accuracy. That bulge is the paper's main finding.
- In *accuracy vs α*, watch the shift curves peak somewhere in the middle while the ID curve stays high.
- The dotted lines show three ways to pick α: the best on held-out ID data (what you can do without shift data),
  the best average shift accuracy (an oracle), and the paper's default α = 0.5.
- Drag the slider (or share the URL with `?alpha=…`) and see which images change on the *Gallery* page, or try
  your own pictures on the *Upload* page.
"""


def explainer() -> None:
    """The 'what am I looking at' box, open on a first visit."""
    with st.expander("What am I looking at?", expanded=False):
        st.markdown(EXPLAINER)


def metric_cards(curves: Curves, alpha: float, acc: dict[str, float], lines: ReferenceLines | None = None,
                 paired: bool = True) -> None:
    """The model at alpha, zero-shot and fine-tuned, for ID and the shift average (cards.metric_cards), and their
    effective robustness when the testbed's line applies; `paired`: False for a merge method's point."""
    rows = cards.metric_cards(curves, alpha, acc, paired)
    robust = cards.robustness_cards(curves, alpha, lines, merged=not paired) if lines is not None else None
    if lines is not None and not paired:
        st.caption(cards.MERGED_ER_NOTE)
    for row in rows + ([robust] if robust else []):
        for col, card in zip(st.columns(len(row)), row, strict=True):
            col.metric(card.label, card.value, delta=card.delta, delta_description=card.delta_description,
                       border=True, help=card.help, height="stretch")  # one height per row, delta or not


@st.fragment
def id_vs_shift_panel(curves: Curves, alpha: float, acc: dict[str, float], endpoint: str | None = None,
                      paths: list[plots.ExtraPath] | None = None, testbed: Experiment | None = None) -> None:
    """The paper's plot with its own options; a fragment, so changing an option reruns only this panel.

    `testbed`: the experiment, whose ImageNet-preset shifts get the robustness testbed's overlay."""
    axes = experiment_axes(testbed) if testbed is not None else []
    c1, c2 = st.columns(2)
    shift = c1.selectbox("Shift accuracy (y axis)", ["avg_shifts", *curves.shift_sets], key="shift_axis",
                         format_func=lambda s: "average over shift sets" if s == "avg_shifts" else s)
    scale = c2.radio("Axis scaling", plots.SCALES, horizontal=True, key="axis_scale", index=1 if axes else 0,
                     help="Logit and probit stretch accuracies near 0% and 100%, as in the paper's figures "
                          "(logit is the robustness testbed's default).")
    lines = reference_lines(axes, scale) if axes else None
    covered = lines is not None and (shift == "avg_shifts" or shift in lines.own)
    words = robustness_plot.overlay_words(lines) if lines is not None else ("", "", "")
    show_testbed = covered and st.toggle(words[0], value=True, key="show_testbed", help=words[1])
    show_paper = st.toggle("Show the paper's published points (ImageNet; CLIP ViT-L/14@336 and ViT-B/16)",
                           key="show_paper", help="Overlay the WiSE-FT paper's numbers, labelled by model and table.")
    if not curves.shift_sets:
        st.warning("This experiment has no shift sets, so there is no ID-vs-shift plot. Add [[shifts]] to its TOML.")
        return
    reference = paper.REFERENCE_POINTS if show_paper else ()
    overlay = robustness_plot.reference_overlay(curves, shift, lines) if show_testbed and lines else None

    def build() -> go.Figure:
        table, restricted = robustness_plot.plot_table(curves, shift, lines) if overlay and lines else (
            curves.table(), False)
        current = (table[curves.id_set].get(curves.grid_alpha(alpha), acc[curves.id_set]) if restricted
                   else acc[curves.id_set], acc[shift])
        return plots.id_vs_shift(table, curves.id_set, shift, alpha, current, scale, reference,
                                 intervals={} if restricted else curves.intervals, label=endpoint,
                                 paths=[] if restricted else paths or (), under=overlay.traces if overlay else (),
                                 metrics=(curves.metric(curves.id_set), curves.metric(shift)),
                                 id_label=f"ImageNet accuracy on {shift}'s classes" if restricted else None)

    key = ("id_vs_shift", id(curves), alpha, tuple(sorted(acc.items())), shift, scale, show_paper,
           id(lines) if overlay else None, endpoint, id(paths))
    st.plotly_chart(figures.shared(key, build, (curves, lines, paths)), key="id_vs_shift",
                    config={"displaylogo": False})
    if overlay is not None:
        st.caption(words[2], help=overlay.help)
    elif lines is None and testbed is not None:
        st.caption(no_testbed_reason(testbed.id_set.preset))
    if show_paper:
        st.caption("✕ Paper points: ImageNet (x) vs the average of its 5 shifts (y), " + paper.PAPER +
                   ", Tables 1 and 5. They are a different model and dataset from the curve above: compare "
                   "shapes, not values.")


def accuracy_panel(curves: Curves, alpha: float, paths: list[plots.ExtraPath] | None = None) -> None:
    """Every set's accuracy over alpha, the three alpha choices and the current alpha."""
    choices = alpha_choices(curves)
    st.plotly_chart(figures.accuracy_figure(curves, alpha, paths or []), key="acc_vs_alpha",
                    config={"displaylogo": False})
    st.caption(" · ".join(f"{c.label}: **{c.alpha:g}** ({c.basis})" for c in choices))


def ensemble_note(curves: Curves, alpha: float) -> None:
    """Where weight-space and output-space mixing differ at alpha, and what the output ensemble costs."""
    ensemble = curves.ensemble_curves()
    grid = curves.grid_alpha(alpha)
    if ensemble is None or grid is None:
        return
    weights, outputs = curves.accuracies(grid), ensemble.accuracies(grid)
    st.caption(f"Dashed: the **output-space ensemble**, (1 − α)·logits₀ + α·logits₁ of the two models. At α = "
               f"{grid:g} it scores {100 * outputs[curves.id_set]:.1f}% ID and {100 * outputs['avg_shifts']:.1f}% on "
               f"the shifts, against {100 * weights[curves.id_set]:.1f}% and {100 * weights['avg_shifts']:.1f}% for "
               "WiSE-FT's weight-space mix. It needs both models at inference (twice the compute and memory); "
               "θ_α is one model.")
    same = cards.same_model_note(curves)
    if same:
        st.caption(same)


def explorer_body(curves: Curves, alpha: float, acc: dict[str, float], complete: bool,
                  notice: DeltaGenerator | None = None, endpoint: str | None = None,
                  others: dict[str, Curves] | None = None, experiment: Experiment | None = None,
                  method: MethodDrawing | None = None, markers: list[plots.ExtraPath] | None = None) -> None:
    """Everything below the alpha controls, from the curves and the accuracies at alpha (sweep or live).

    `others`: the curves of the experiment's other fine-tuned endpoints, drawn beside the chosen one's;
    `experiment`: its ImageNet-preset shifts bring the robustness testbed's line and effective robustness;
    `method`: a merge method's path and point (the cards show it); `markers`: more points for the ID-vs-shift plot.
    """
    axes = experiment_axes(experiment) if experiment is not None else []
    lines = reference_lines(axes) if axes else None  # the cards and table: the testbed's logit line
    notice = notice if notice is not None else st.empty()
    if not complete:
        done, total = curves.images
        notice.info(f"Every α is estimated from the first {done:,} of {total:,} images; the curves are being filled "
                    "in as more images stream in (progress below). Bars and bands are 95% intervals: they tighten "
                    "as the estimates sharpen, and the final numbers are exactly those of a full run.")
    metric_cards(curves, alpha, method.accuracies if method else acc, lines, paired=method is None)
    own = method.paths() if method else []
    if method:
        st.caption(method.caption())
    paths = figures.endpoint_paths(endpoint, curves, others or {})
    left, right = st.columns(2)
    with left:
        st.subheader("ID vs shift accuracy")
        id_vs_shift_panel(curves, alpha, acc, endpoint if others else None, paths + own + (markers or []),
                          experiment)
    with right:
        st.subheader("Accuracy vs α")
        accuracy_panel(curves, alpha, paths + own[:1])
    if curves.ensemble:
        ensemble_note(curves, alpha)
    results_table(curves, lines)


@st.fragment
def results_table(curves: Curves, lines: ReferenceLines | None) -> None:
    """Every set's top-1 at every grid alpha, built only while its box is open (opening it reruns this fragment):
    a closed box's 21 rows were still sent and drawn, 330 markdown cells of a first paint's 3,400 elements."""
    box = st.expander("Results table (top-1 %)", key=TABLE_KEY, on_change="rerun")
    if box.open:
        with box:  # a static table: 21 rows need no data grid, whose script would slow the page further
            st.table(figures.results_table(curves, lines))


def explorer_page() -> None:
    """The landing page: stored curves at once when they answer (warm start), else the sweep as it streams."""
    st.set_page_config(page_title="WiSE-FT Explorer", page_icon=":material/explore:", layout="wide")
    sidebar.sidebar_top()
    st.title("WiSE-FT Explorer")
    st.caption("Robust fine-tuning of zero-shot models: interpolate the weights of a zero-shot and a fine-tuned CLIP.")
    explainer()
    experiment = state.load_experiment_file()
    if experiment is None:
        st.stop()
    alpha = state.alpha_controls()
    picker = st.expander("Merge method: WiSE-FT's line or another way to build θ",
                         expanded=state.method_choice()[0] != state.PLAIN_METHOD)
    # One slot for the sweep's notes in every kind of run, so the cards below keep their place in the page when a
    # note comes or goes (a moved element is drawn twice while Streamlit replaces the page).
    notice = st.empty()
    curves = state.warm_curves(experiment, alpha)
    if curves is not None:
        _warm_start(experiment, curves, alpha, notice, picker)
    else:
        _cold_start(experiment, alpha, notice, picker)


def _merge_extras(curves: Curves, alpha: float) -> tuple[MethodDrawing | None, list[plots.ExtraPath]]:
    """The session's merge method's path and the toggled markers (nothing, and no torch, for WiSE-FT alone)."""
    if not merge_panel.needs_runtime():
        return None, []
    runtime = state.load_runtime()
    if runtime is None:
        return None, []
    return merge_panel.method_drawing(runtime, alpha), merge_panel.markers(runtime, curves, alpha)


def _merge_picker(picker: DeltaGenerator, curves: Curves, alpha: float) -> None:
    """The picker, drawn last: listing the methods loads the models and the endpoints, so a warm start (no model
    loaded) offers a button first. Before torch is imported no model can be loaded, and asking the runtime would
    import it: seconds of the server's interpreter while the browser fetches the charts' script and draws them."""
    def offer() -> None:
        picker.button("Show the merge methods (loads the models)", key=merge_panel.OPEN_KEY,
                      on_click=merge_panel.open_picker)

    if not merge_panel.opened() and not state.models_may_be_loaded():
        offer()
        return
    runtime = state.load_runtime(load_models=False)
    if runtime is None:
        return
    with picker:
        if not runtime.models_loaded and not merge_panel.opened():
            offer()
            return
        runtime = state.load_runtime()
        if runtime is not None:
            with shown_errors("The merge methods cannot be listed"):
                merge_panel.method_picker(runtime, curves, alpha)


def _warm_start(experiment: Experiment, curves: Curves, alpha: float, notice: DeltaGenerator,
                picker: DeltaGenerator) -> None:
    """The stored curves answer a grid alpha: the page is drawn before torch or a model loads."""
    others = state.other_endpoint_curves(experiment)
    grid_alpha = curves.grid_alpha(alpha)
    assert grid_alpha is not None  # state.warm_curves gives only curves whose grid holds alpha
    method, markers = _merge_extras(curves, alpha)
    explorer_body(curves, alpha, curves.accuracies(grid_alpha), complete=True, notice=notice,
                  endpoint=experiment.endpoint, others=others, experiment=experiment, method=method,
                  markers=markers)
    if curves.about:  # what the models are, as stored with the curves: no need to load them for this page
        sidebar.list_facts(experiment.name, curves.about, [s.name for s in experiment.eval_sets])
    else:
        sidebar.model_details()
    if len(others) < len(experiment.endpoints) - 1:  # their sweeps start once the browser has the page
        endpoints.endpoints_progress(experiment, len(others), start=True)
    _merge_picker(picker, curves, alpha)


def _cold_start(experiment: Experiment, alpha: float, notice: DeltaGenerator, picker: DeltaGenerator) -> None:
    """No stored curves for this alpha: load the models, start (or join) the sweep and draw what it has so far."""
    if state.finished_curves(experiment) is None:  # at once: torch and the models take seconds to load
        notice.info(cards.COLD_START, icon=":material/hourglass_top:")
    from . import results  # the sweep side: imports torch and loads the models

    runtime = state.load_runtime()
    if runtime is None:
        st.stop()
    with shown_errors("The Explorer cannot show this experiment"):
        job = results.sweep_job(runtime)  # start computing before anything else is drawn
        sidebar.runtime_details(runtime)
        waiting = st.empty()  # the same place in every run, so that the page keeps its layout
        if job.status().result is None:
            waiting.plotly_chart(figures.waiting_frame(), key="waiting_frame", config={"displaylogo": False})
        result, complete = results.ensure_sweep(runtime, alpha, notice)
        waiting.empty()
        if result is None:
            st.stop()
        if complete:
            notice.empty()  # no first-start note over a finished sweep (an off-grid alpha also comes this way)
        sidebar.results_origin(result.provenance)
        # Other endpoints' sweeps start once this one is complete: the chosen path fills in first.
        others = results.other_endpoints(experiment) if complete else state.other_endpoint_curves(experiment)
        curves = result.curves()
        method, markers = _merge_extras(curves, alpha) if complete else (None, [])
        explorer_body(curves, alpha, results.accuracies_at(runtime, result, alpha), complete, notice,
                      experiment.endpoint, others, experiment, method, markers)
        if complete and len(others) < len(experiment.endpoints) - 1:
            endpoints.endpoints_progress(experiment, len(others))
        if not complete:
            picker.caption("The merge methods are offered once the sweep is complete.")
            results.sweep_progress(runtime, result.images[0])
        else:
            _merge_picker(picker, curves, alpha)
