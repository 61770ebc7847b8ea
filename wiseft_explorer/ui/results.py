"""Sweep results for the pages: the experiment's shared background sweep, its progress, live off-grid alpha."""

from __future__ import annotations

import time

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from ..evaluation.engine import StreamProgress
from ..evaluation.jobs import FinishedJob, JobStatus, SweepJob, SweepJobs
from ..evaluation.runtime import ExperimentRuntime
from ..evaluation.sweep import evaluate_at, run_sweep
from ..evaluation.sweep_result import Predictions, SweepResult
from ..experiment.spec import Experiment
from ..results.curves import ALPHA_GRID, Curves

# While the sets stream, the page is redrawn with sharper estimates at most this often; between redraws only the
# small progress fragment reruns (a full redraw costs the browser and the server a second of CPU or more).
REDRAW_SECONDS = 6.0
POLL_SECONDS = 1.0
FIRST_WAIT_SECONDS = 120.0  # cold start: wait at most this long for the first estimate of every alpha
LIVE_MAX_IMAGES = 2000  # an off-grid alpha is evaluated live on at most this many images per set (a fair sample)
_LIVE_KEY = "wiseft_live"
_LIVE_MAX = 16  # off-grid alphas remembered per session
_DRAWN_KEY = "wiseft_drawn_at"


@st.cache_resource
def _jobs() -> SweepJobs:
    """Sweep jobs shared by all sessions: one computation per experiment, however many people are watching."""
    return SweepJobs()


def sweep_job(runtime: ExperimentRuntime) -> SweepJob | FinishedJob:
    """The experiment's shared sweep: read from the disk cache if complete, else computed in the background."""
    return _jobs().job(runtime)


def other_endpoints(experiment: Experiment) -> dict[str, Curves]:
    """The curves of the experiment's other fine-tuned endpoints: stored ones, else what their background sweeps
    (started here, one per endpoint for every session) have so far; endpoints with nothing yet are left out."""
    from . import state

    found = {}
    for name in experiment.endpoint_names:
        if name == experiment.endpoint:
            continue
        curves = state.finished_curves(experiment.with_endpoint(name))
        if curves is None and experiment.path is not None:
            runtime = state.load_runtime(experiment.path, load_models=False, endpoint=name)
            status = sweep_job(runtime).status() if runtime is not None else None
            curves = status.result.curves() if status is not None and status.result is not None else None
        if curves is not None:
            found[name] = curves
    return found


def adopt(runtime: ExperimentRuntime, result: SweepResult) -> None:
    """Serve an imported (complete) sweep to every session from now on, in place of any job computing it here."""
    _jobs().adopt(runtime, result)


def ensure_sweep(runtime: ExperimentRuntime, alpha: float | None = None,
                 notice: DeltaGenerator | None = None) -> tuple[SweepResult | None, bool]:
    """A result to draw now (on a cold start: once the first batch of every set is evaluated at every alpha) and
    whether it is complete; the first wait's progress bar goes into `notice` when given."""
    job = sweep_job(runtime)
    status = job.status()
    if status.result is None and not status.finished:
        deadline = time.monotonic() + FIRST_WAIT_SECONDS
        bar = (notice if notice is not None else st).progress(
            0.0, text="Evaluating the first images of every set at every α…")
        while status.result is None and not status.finished and time.monotonic() < deadline:
            time.sleep(0.2)
            status = job.status()
            bar.progress(status.fraction, text=f"Evaluating the first images of every set at every α: {status.message}")
        bar.empty()
    if status.error is not None:
        st.error(f"The sweep failed: {status.error}. Fix the experiment (see the message) and reload the page.")
        return None, True
    st.session_state[_DRAWN_KEY] = time.monotonic()
    return status.result, status.finished


def _redraw_due(status: JobStatus, shown_images: int) -> bool:
    """Whether the page should be drawn again: the sweep finished, or it has sharper numbers and time has passed."""
    if status.finished:
        return True
    newer = status.result is not None and shown_images < status.result.images[0]
    return newer and time.monotonic() - st.session_state.get(_DRAWN_KEY, 0.0) >= REDRAW_SECONDS


@st.fragment(run_every=POLL_SECONDS)
def sweep_progress(runtime: ExperimentRuntime, shown_images: int) -> None:
    """While the sets stream: how far it has got and the time left; redraws the page with sharper numbers."""
    status = sweep_job(runtime).status()
    if _redraw_due(status, shown_images):
        st.rerun(scope="app")
    st.progress(status.fraction, text=f"Streaming every α at once: {status.message}")


def compute_sweep(runtime: ExperimentRuntime) -> SweepResult:
    """Run the whole sweep now with a progress bar (the Models page's explicit 'run' button)."""
    bar = st.progress(0.0, text="Running the α sweep")

    def progress(done: StreamProgress, _snapshot) -> None:
        bar.progress(done.done / done.total if done.total else 1.0, text=f"Running the α sweep: {done.line()}")

    try:
        return run_sweep(runtime, ALPHA_GRID, on_progress=progress)
    finally:
        bar.empty()  # also when the sweep fails: no bar stuck at 2/84 under the error


def live_predictions(runtime: ExperimentRuntime, alpha: float) -> dict[str, Predictions]:
    """Every set evaluated at an alpha the sweep does not (yet) have, with this session's working model."""
    memo: dict = st.session_state.setdefault(_LIVE_KEY, {})
    key = (str(runtime.experiment.path), id(runtime), round(alpha, 6))
    if key not in memo:
        with st.spinner(f"Evaluating every set at α = {alpha:g}…"), runtime.borrow_working(alpha) as working:
            memo[key] = evaluate_at(runtime, alpha, working, max_images=LIVE_MAX_IMAGES)
        while len(memo) > _LIVE_MAX:
            memo.pop(next(iter(memo)))
    return memo[key]


def accuracies_at(runtime: ExperimentRuntime, result: SweepResult, alpha: float) -> dict[str, float]:
    """Top-1 of every set and the shift average at alpha: from the sweep on the grid, live otherwise."""
    on_grid = result.grid_alpha(alpha)
    if on_grid is not None:
        return result.accuracies(on_grid)
    live = live_predictions(runtime, alpha)
    if any(p.n < p.total for p in live.values()):  # large sets: an off-grid alpha is estimated on a fair sample
        st.caption(f"α = {alpha:g} is off the grid: estimated live on a fair sample of up to "
                   f"{LIVE_MAX_IMAGES:,} images per set ({sum(p.n for p in live.values()):,} of "
                   f"{sum(p.total for p in live.values()):,}); grid values use every image.")
    return result.with_average({name: p.top1 for name, p in live.items()})


def set_predictions(runtime: ExperimentRuntime, result: SweepResult, set_name: str, alpha: float) -> Predictions | None:
    """Live predictions of one set at an alpha the sweep lacks (None when the sweep has it)."""
    if result.grid_alpha(alpha) is not None:
        return None
    return live_predictions(runtime, alpha)[set_name]
