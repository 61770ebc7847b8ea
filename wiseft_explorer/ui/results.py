"""Sweep results for the pages: coarse-first progressive sweep with st.progress, live evaluation at off-grid alpha."""

from __future__ import annotations

import json
import threading

import streamlit as st

from ..cache import cache_key
from ..gallery import grid_alpha
from ..runtime import ExperimentRuntime
from ..sweep import ALPHA_GRID, Predictions, SweepResult, cached_sweep, evaluate_at, run_sweep
from . import state

# Coarse first: endpoints, 0.5 and quarters draw the curve's shape in seconds; tenths, then the full grid follow.
PHASES: tuple[tuple[float, ...], ...] = (
    (0.0, 0.25, 0.5, 0.75, 1.0),
    tuple(a for a in ALPHA_GRID if abs(a * 10 - round(a * 10)) < 1e-9),
    ALPHA_GRID,
)
_LIVE_KEY = "wiseft_live"
_LIVE_MAX = 16  # off-grid alphas remembered per session


@st.cache_resource
def _complete_store() -> tuple[dict[str, SweepResult], threading.Lock]:
    """Finished sweeps shared (read-only) by all sessions: a warm start never touches the disk again."""
    return {}, threading.Lock()


def _store_key(runtime: ExperimentRuntime) -> str:
    """Identity of an experiment's sweep: its models, prompts and every set's content."""
    sets = {name: runtime.set_fingerprint(name) for name in runtime.set_names}
    return cache_key(kind="app-sweep", **runtime.fingerprint, sets=json.dumps(sets, sort_keys=True))


def best_available(runtime: ExperimentRuntime) -> tuple[SweepResult | None, int]:
    """The finest cached phase (result, phase index) without computing anything; (None, -1) on a cold start."""
    store, lock = _complete_store()
    key = _store_key(runtime)
    with lock:
        if key in store:
            return store[key], len(PHASES) - 1
    for index in reversed(range(len(PHASES))):
        result = cached_sweep(runtime, PHASES[index])
        if result is not None:
            if index == len(PHASES) - 1:
                with lock:
                    store[key] = result
            return result, index
    return None, -1


def compute_phase(runtime: ExperimentRuntime, index: int, container=None) -> SweepResult:
    """Run one phase of the sweep with a progress bar (per set and alpha); cached entries are only read."""
    alphas = PHASES[index]
    label = ("Evaluating the coarse α grid" if index == 0 else
             f"Filling in the α grid ({len(alphas)} values)")
    bar = (container or st).progress(0.0, text=label)

    def progress(done: int, total: int, name: str, alpha: float) -> None:
        bar.progress(done / total, text=f"{label}: {name} at α = {alpha:.2f} ({done}/{total})")

    result = run_sweep(runtime, alphas, progress=progress, working=state.working_model(runtime))
    bar.empty()
    if index == len(PHASES) - 1:
        store, lock = _complete_store()
        with lock:
            store[_store_key(runtime)] = result
    return result


def live_predictions(runtime: ExperimentRuntime, alpha: float) -> dict[str, Predictions]:
    """Every set evaluated at an off-grid alpha with this session's working model (memoised per session)."""
    memo: dict = st.session_state.setdefault(_LIVE_KEY, {})
    key = (str(runtime.experiment.path), id(runtime), round(alpha, 6))
    if key not in memo:
        with st.spinner(f"Evaluating every set at α = {alpha:g} (off the grid)…"):
            memo[key] = evaluate_at(runtime, alpha, state.working_model(runtime))
        while len(memo) > _LIVE_MAX:
            memo.pop(next(iter(memo)))
    return memo[key]


def accuracies_at(runtime: ExperimentRuntime, result: SweepResult, alpha: float) -> dict[str, float]:
    """Top-1 of every set and the shift average at alpha: from the sweep on the grid, live otherwise."""
    on_grid = grid_alpha(result, alpha)
    if on_grid is not None:
        acc = {name: result.top1(name, on_grid) for name in result.predictions}
    else:
        acc = {name: p.top1 for name, p in live_predictions(runtime, alpha).items()}
    shifts = result.shift_sets
    acc["avg_shifts"] = sum(acc[s] for s in shifts) / len(shifts) if shifts else float("nan")
    return acc


def set_predictions(runtime: ExperimentRuntime, result: SweepResult, set_name: str, alpha: float) -> Predictions | None:
    """Live predictions of one set at an off-grid alpha (None on the grid: the sweep has them)."""
    if grid_alpha(result, alpha) is not None:
        return None
    return live_predictions(runtime, alpha)[set_name]


def ensure_sweep(runtime: ExperimentRuntime) -> tuple[SweepResult, bool]:
    """A result to draw now (computing the coarse phase on a cold start) and whether the full grid is there."""
    result, index = best_available(runtime)
    if result is None:
        result, index = compute_phase(runtime, 0), 0
    return result, index == len(PHASES) - 1


def fill_in(runtime: ExperimentRuntime, container=None) -> None:
    """Compute the next unfinished phase, then rerun so the page redraws with the finer grid."""
    _, index = best_available(runtime)
    if index < len(PHASES) - 1:
        compute_phase(runtime, index + 1, container)
        st.rerun()
