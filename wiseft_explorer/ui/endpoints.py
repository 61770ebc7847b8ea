"""The Explorer's other fine-tuned endpoints while their sweeps run: a line saying how many are left, and a redraw
of the page each time another one's curves are stored.

Torch-free until the sweeps start, so that a warm start can begin them after its page is in the browser: importing
torch and the models takes the server's interpreter for seconds, and the sweeps take every core, while the browser
is still fetching the charts' script and drawing the page.
"""

from __future__ import annotations

import streamlit as st

from ..experiment.spec import Experiment
from . import state

POLL_SECONDS = 3.0  # how often the line looks for newly stored curves
_IN_PAGE_KEY = "wiseft_endpoints_in_page"  # set by a whole-page run, taken by the line's run inside it
_STARTED_KEY = "wiseft_endpoints_started"  # (experiment file, endpoint) pairs whose others this session started


def endpoints_progress(experiment: Experiment, shown: int, *, start: bool = False) -> None:
    """While the other endpoints' sweeps run: the line, and a redraw once more of them are stored than the page's
    `shown`. `start`: begin (or join) those sweeps, not in this run but in the line's first timed rerun, which the
    browser asks for once it has the page."""
    st.session_state[_IN_PAGE_KEY] = True
    _progress(experiment, shown, start)


@st.fragment(run_every=POLL_SECONDS)
def _progress(experiment: Experiment, shown: int, start: bool) -> None:
    in_page = st.session_state.pop(_IN_PAGE_KEY, False)
    started = st.session_state.setdefault(_STARTED_KEY, set())
    if start and not in_page and (str(experiment.path), experiment.endpoint) not in started:
        from . import results  # imports torch

        results.other_endpoints(experiment)  # starts the missing endpoints' sweeps (shared by every session)
        started.add((str(experiment.path), experiment.endpoint))  # once: later ticks only look for their curves
    others = [n for n in experiment.endpoint_names if n != experiment.endpoint]
    finished = sum(state.finished_curves(experiment.with_endpoint(n)) is not None for n in others)
    if finished > shown:
        st.rerun(scope="app")
    if finished < len(others):
        st.caption(f"Computing the paths of the other fine-tuned endpoints ({len(others) - finished} left): they "
                   "appear in the plots when done.")
