"""Gallery page body: eval images with zero-shot / alpha / fine-tuned predictions, filters, probability vs alpha."""

from __future__ import annotations

import streamlit as st

from ..data.images import ImageDecodeError
from ..evaluation.predict import curve_frame, image_probabilities
from ..evaluation.runtime import ExperimentRuntime
from ..evaluation.sweep_result import SweepResult
from ..presentation import plots
from ..presentation.gallery import (
    FILTERS,
    apply_filter,
    filter_counts,
    gallery_frame,
)
from . import merge_panel, results, state

PER_PAGE = 24
COLUMNS = 6
THUMB = 96


def _mark(ok: bool) -> str:
    # Plain check marks in colour render with any font (emoji fonts are often missing on lecture-hall machines).
    return ":green[**✓**]" if ok else ":red[**✗**]"


def tile_text(row) -> str:
    """The caption under one gallery image: index, true class and the three predictions, marked right/wrong."""
    return (f"**#{row.index}** · true: **{row.true}**  \n"
            f"{_mark(row.zeroshot_ok)} zero-shot: {row.zeroshot}  \n"
            f"{_mark(row.alpha_ok)} α: {row.alpha}  \n"
            f"{_mark(row.finetuned_ok)} fine-tuned: {row.finetuned}")


@st.fragment
def image_detail(runtime: ExperimentRuntime, result: SweepResult, set_name: str, indices: list[int],
                 alpha: float) -> None:
    """Class probability vs alpha for one selected image (a fragment: picking another image reruns only this)."""
    if not indices:
        return
    index = st.selectbox("Image to inspect", indices, key="gallery_pick", format_func=lambda i: f"#{i}")
    ev = runtime.eval_set(set_name)
    names = ev.class_names(runtime.experiment.classnames)
    try:
        probs = image_probabilities(runtime, result, set_name, index)
    except ImageDecodeError as err:
        st.warning(f"Image #{index} could not be decoded: {err.reason}")
        return
    alphas = sorted(result.alphas)
    left, right = st.columns([1, 3])
    left.image(ev.picture(index, size=192), caption=f"#{index}: {names[int(ev.labels[index])]}")
    right.plotly_chart(plots.probability_vs_alpha(curve_frame(probs, names, alphas), alpha,
                                                  names[int(ev.labels[index])]), key="gallery_curve")


def gallery_page(runtime: ExperimentRuntime) -> None:
    """The whole gallery below the title."""
    alpha = state.alpha_controls()
    result, complete = results.ensure_sweep(runtime, alpha)
    if result is None:
        return
    if not complete:
        results.sweep_progress(runtime, result.images[0])
    set_name = st.selectbox("Set", runtime.set_names, key="gallery_set")
    ev = runtime.eval_set(set_name)
    live = merge_panel.method_predictions(runtime, set_name, alpha, results.LIVE_MAX_IMAGES)
    if live is not None:
        st.caption(f"The α column is **{merge_panel.title()}** at α = {alpha:g} (the merge method picked in the "
                   "Explorer); zero-shot and fine-tuned are the two models.")
    else:
        live = results.set_predictions(runtime, result, set_name, alpha)
    frame = gallery_frame(result, set_name, alpha, ev.labels, ev.class_names(runtime.experiment.classnames), live)
    counts = filter_counts(frame)
    choice = st.radio("Show", list(FILTERS), key="gallery_filter", horizontal=False,
                      format_func=lambda k: f"{FILTERS[k]} · {counts[k]}")
    shown = apply_filter(frame, choice)
    st.caption(f"{len(shown)} of {len(frame)} images of **{set_name}** match at α = {alpha:g}.")
    if shown.empty:
        st.info("No image matches this filter at this α. Try another filter, set or α.")
        return
    pages = max(1, -(-len(shown) // PER_PAGE))
    page = st.number_input("Page", 1, pages, 1, key="gallery_page") if pages > 1 else 1
    rows = list(shown.iloc[(page - 1) * PER_PAGE: page * PER_PAGE].itertuples(index=False))
    for start in range(0, len(rows), COLUMNS):
        for col, row in zip(st.columns(COLUMNS), rows[start:start + COLUMNS], strict=False):
            with col:
                st.image(ev.picture(int(row.index), size=THUMB))
                st.markdown(tile_text(row))
    st.subheader("Probability vs α")
    image_detail(runtime, result, set_name, [int(i) for i in shown["index"]], alpha)
