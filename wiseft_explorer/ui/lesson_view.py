"""Lesson page: six steps a lecturer clicks through, each with its own URL (?step=N), alpha, view and text."""

from __future__ import annotations

import streamlit as st

from ..evaluation.predict import analyse_images
from ..evaluation.runtime import ExperimentRuntime
from ..presentation import plots, robustness_plot
from ..presentation.gallery import apply_filter, gallery_frame
from ..presentation.lesson import (
    EFFECTIVE_ROBUSTNESS,
    LessonStep,
    MergeFacts,
    broken_caption,
    lesson_steps,
    step_index,
    step_note,
    worst_shift,
)
from ..presentation.merge_views import label_free_paths
from ..results.curves import Curves, choose_alphas
from ..results.robustness import ReferenceLines, reference_lines
from ..results.testbed import experiment_axes
from . import results, state, upload

_STEP_KEY = "lesson_step"
_NOTE_KEY = "lesson_step_note"  # what a link with an unknown step gets told, until the next step
EXAMPLES = 2  # images shown that fine-tuning broke


def _go(index: int, steps: list[LessonStep]) -> None:
    """Move to a step: its alpha becomes the session's, its number goes into the URL (a slide can link to it)."""
    st.session_state[_STEP_KEY] = index
    st.session_state.pop(_NOTE_KEY, None)  # a link's unknown step is said until the lecturer moves on
    st.query_params["step"] = str(index + 1)
    state.set_alpha(steps[index].alpha)


def _current(steps: list[LessonStep]) -> int:
    if _STEP_KEY not in st.session_state:
        requested = st.query_params.get("step")
        index = step_index(steps, requested)
        _go(index, steps)
        st.session_state[_NOTE_KEY] = step_note(steps, requested)
    return int(st.session_state[_STEP_KEY])


def _plot(step: LessonStep, curves: Curves, endpoint: str | None, lines: ReferenceLines | None = None) -> None:
    paths = plots.endpoint_paths(endpoint, curves, {}) if step.ensemble else []
    paths += label_free_paths(curves, step.markers)
    overlay = robustness_plot.reference_overlay(curves, "avg_shifts", lines) if (
        lines is not None and step.slug == EFFECTIVE_ROBUSTNESS) else None
    acc = curves.accuracies(step.alpha)
    if step.view == "accuracy_vs_alpha" or not curves.shift_sets:
        fig = plots.accuracy_vs_alpha(curves.table(), curves.sets, step.alpha, choose_alphas(curves),
                                      curves.intervals, paths, curves.id_set)
    else:
        fig = plots.id_vs_shift(curves.table(), curves.id_set, "avg_shifts", step.alpha,
                                (acc[curves.id_set], acc["avg_shifts"]), lines.scale if overlay and lines else "linear",
                                intervals=curves.intervals, label=endpoint, paths=paths,
                                under=overlay.traces if overlay else ())
    st.plotly_chart(fig, key=f"lesson_plot_{step.slug}", config={"displaylogo": False})


def _broken(runtime: ExperimentRuntime, curves: Curves) -> None:
    """Two images of the shift fine-tuning hurt most that zero-shot got right and the fine-tuned model gets wrong."""
    result, _ = results.ensure_sweep(runtime)
    worst = worst_shift(curves)
    if result is None or worst is None:
        return
    ev = runtime.eval_set(worst)
    names = ev.class_names(runtime.experiment.classnames)
    broken = apply_filter(gallery_frame(result, worst, 1.0, ev.labels, names), "broken").head(EXAMPLES)
    if broken.empty:
        st.caption(f"No {worst} image was right at α = 0 and wrong at α = 1.")
        return
    for col, row in zip(st.columns(EXAMPLES), broken.itertuples(), strict=False):
        col.image(ev.picture(row.index, size=160), caption=broken_caption(worst, row.index, row.true))
        col.markdown(f"zero-shot: **{row.zeroshot}** ✓  \nfine-tuned: **{row.finetuned}** ✗")


def _try_it(runtime: ExperimentRuntime, alpha: float) -> None:
    items = upload.drawing_items()
    if items:
        with st.spinner("Predicting…"), runtime.borrow_working(alpha) as working:
            analysed = analyse_images(runtime, working, items, alpha)
        upload.show_analysis(analysed[0], alpha, "lesson")


def lesson_curves(runtime: ExperimentRuntime) -> Curves | None:
    """The curves the lesson speaks from: the stored full sweep, else the sweep as far as it has got."""
    stored = state.finished_curves(runtime.experiment)
    if stored is not None:
        return stored
    result, complete = results.ensure_sweep(runtime)
    if result is None:
        return None
    if not complete:
        results.sweep_progress(runtime, result.images[0])
    return result.curves()


def merge_facts(runtime: ExperimentRuntime, curves: Curves) -> MergeFacts | None:
    """The soups step's numbers when ≥ 2 fine-tuned endpoints share θ₀ (the uniform soup on a fair sample)."""
    from ..evaluation.merging import endpoints
    from ..evaluation.method_view import label_free_alphas, method_curves

    count = len(endpoints(runtime).inputs.endpoints)
    if count < 2:
        return None
    with runtime.borrow_working() as working:
        soup = method_curves(runtime, "soup", {}, 1.0, working).accuracies(1.0)
    found = label_free_alphas(runtime)[0]
    return MergeFacts(count, (soup[curves.id_set], soup["avg_shifts"]), tuple((f.label, f.alpha) for f in found))


def lesson_page(curves: Curves, runtime: ExperimentRuntime | None, endpoint: str | None) -> None:
    """The lesson below the title: step navigation, the step's text, its view and its examples."""
    axes = experiment_axes(runtime.experiment) if runtime is not None else []
    lines = reference_lines(axes) if axes else None
    steps = lesson_steps(curves, endpoint, lines, merge_facts(runtime, curves) if runtime is not None else None)
    index = _current(steps)
    step = steps[index]
    note = st.session_state.get(_NOTE_KEY)
    if note:
        st.warning(note)
    st.progress((index + 1) / len(steps), text=f"Step {index + 1} of {len(steps)}: **{step.title}** · α = {step.alpha:g}")
    st.subheader(f"{index + 1}. {step.title}")
    st.markdown(step.text)
    back, forward, _ = st.columns([1, 1, 4])
    back.button("← Back", key="lesson_back", disabled=index == 0, on_click=_go, args=(index - 1, steps))
    forward.button("Next →", key="lesson_next", disabled=index == len(steps) - 1, on_click=_go,
                   args=(index + 1, steps))
    if step.view == "canvas":
        if runtime is not None:
            _try_it(runtime, step.alpha)
        return
    _plot(step, curves, endpoint, lines)
    if step.broken_examples and runtime is not None:
        _broken(runtime, curves)
    st.caption(f"This step's link: `?step={index + 1}` (or `?step={step.slug}`). The Explorer now shows α = "
               f"{step.alpha:g} too.")
