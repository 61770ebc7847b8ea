"""Session state: which experiment, its shared read-only runtime, this session's working model, the current alpha."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from ..experiment.locations import DEFAULT_EXPERIMENT, named_experiment
from ..experiment.spec import Experiment, ExperimentError
from ..presentation.cards import alpha_position
from ..results.curves import ALPHA_GRID, PAPER_ALPHA, Curves, stored_curves
from ..store.keys import files_version
from . import memo

if TYPE_CHECKING:  # the runtime side imports torch: loaded only once a page needs models (see load_runtime)
    from ..evaluation.registry import RuntimeRegistry
    from ..evaluation.runtime import ExperimentRuntime

ENV_EXPERIMENT = "WISEFT_EXPERIMENT"  # lets tests (and users) point the app at another experiment file
ALPHA_KEY = "wiseft_alpha"  # not a widget key, so the value survives page switches
EXPERIMENT_KEY = "wiseft_experiment"
ENDPOINT_KEY = "wiseft_endpoint"  # the fine-tuned endpoint this session looks at, of an experiment with several
SYNCED_KEY = "wiseft_alpha_synced"  # the alpha the slider and number input were last set to
ALPHA_MIN, ALPHA_MAX = -1.0, 2.0  # extrapolation range of the number input
BUILD_HINT = "python -m wiseft_explorer build-demo"
EXACT_BOX = "exact_alpha_box"  # the container of the exact-alpha form (its CSS class is st-key-<key>)


def default_experiment() -> Path:
    """$WISEFT_EXPERIMENT if set, else the built-in demo."""
    env = os.environ.get(ENV_EXPERIMENT)
    return Path(env).expanduser().resolve() if env else DEFAULT_EXPERIMENT


def _from_url() -> Path | None:
    """The experiment a shared link names (`?experiment=demo-linear.toml`, a built-in or user file), or None."""
    raw = st.query_params.get("experiment")
    if raw is None:
        return None
    # Only files of the experiment folders: a link must not make the server open any path it is given.
    path = named_experiment(raw)
    if path is None:
        st.warning(f"Ignoring `?experiment={raw}` in the URL: it names no built-in experiment and no file of "
                   "your experiments folder; showing the default one.")
    return path


def _to_url(path: Path) -> None:
    """Put the session's experiment into the URL when a link can name it (a file of the experiment folders)."""
    if memo.link_name(path) is not None:
        st.query_params["experiment"] = path.name
    elif "experiment" in st.query_params:
        del st.query_params["experiment"]


def experiment_path() -> Path:
    """The experiment file this session looks at: from the URL on a session's first run, else its choice."""
    if EXPERIMENT_KEY not in st.session_state:
        st.session_state[EXPERIMENT_KEY] = str(_from_url() or default_experiment())
    path = Path(st.session_state[EXPERIMENT_KEY])
    _to_url(path)
    return path


def set_experiment(path: str | Path) -> None:
    """Switch this session to another experiment file (and the shareable URL with it)."""
    resolved = Path(path).expanduser().resolve()
    st.session_state[EXPERIMENT_KEY] = str(resolved)
    _to_url(resolved)


def experiment_files() -> list[Path]:
    """The default, every built-in and user experiment file, and the current choice."""
    return list(dict.fromkeys([default_experiment(), *(path for path, _ in memo.listed()), experiment_path()]))


@st.cache_resource
def _registry() -> RuntimeRegistry:
    """The server's runtimes, shared read-only by every session, within the models' memory budget."""
    from ..evaluation.registry import RuntimeRegistry

    return RuntimeRegistry()


def _file_missing(path: Path) -> bool:
    """Show how to fix a missing experiment file; True if it is missing."""
    if path.is_file():
        return False
    if path == DEFAULT_EXPERIMENT:
        st.error(f"The built-in demo is not built yet: `{path}` is missing. Build it with `{BUILD_HINT}`, "
                 f"pick another experiment in the sidebar, or set {ENV_EXPERIMENT} to an experiment TOML.")
    else:
        st.error(f"Experiment file not found: `{path}`. Pick another one in the sidebar or fix the path.")
    return True


def endpoint_choice(experiment: Experiment) -> str | None:
    """The session's fine-tuned endpoint: from the URL on a first run (`?endpoint=...`), else its choice or the first."""
    names = experiment.endpoint_names
    if len(names) < 2:
        if "endpoint" in st.query_params:
            del st.query_params["endpoint"]
        return names[0] if names else None
    if st.session_state.get(ENDPOINT_KEY) not in names:
        raw = st.query_params.get("endpoint")
        st.session_state[ENDPOINT_KEY] = raw if raw in names else names[0]
    st.query_params["endpoint"] = st.session_state[ENDPOINT_KEY]
    return st.session_state[ENDPOINT_KEY]


def set_endpoint(name: str) -> None:
    """Switch this session to another fine-tuned endpoint of its experiment."""
    st.session_state[ENDPOINT_KEY] = name
    st.query_params["endpoint"] = name


def load_experiment_file(path: Path | None = None) -> Experiment | None:
    """The session's experiment (at its chosen endpoint) as parsed from its TOML, or None after an error message."""
    path = path or experiment_path()
    if _file_missing(path):
        return None
    try:
        experiment = memo.parsed_experiment(path)
        return experiment.with_endpoint(endpoint_choice(experiment))
    except (ExperimentError, OSError, ValueError) as err:
        st.error(f"Cannot load `{path.name}`: {err}")
        return None


def finished_curves(experiment: Experiment) -> Curves | None:
    """The experiment's stored full-grid curves (a finished sweep: computed here, elsewhere or imported), or None.

    Read once per version of the curves file and shared by every session: callers must not change them."""
    path = experiment.path
    if path is None:
        return stored_curves(experiment)
    return memo.stored(experiment, path)


def other_endpoint_curves(experiment: Experiment) -> dict[str, Curves]:
    """The stored curves of the experiment's other fine-tuned endpoints (those finished so far), by name."""
    found = {}
    for name in experiment.endpoint_names:
        curves = finished_curves(experiment.with_endpoint(name)) if name != experiment.endpoint else None
        if curves is not None:
            found[name] = curves
    return found


def warm_curves(experiment: Experiment, alpha: float) -> Curves | None:
    """The experiment's stored full-grid curves when they can answer alpha alone (a warm start), else None."""
    curves = finished_curves(experiment)
    return curves if curves is not None and curves.grid_alpha(alpha) is not None else None


def models_may_be_loaded() -> bool:
    """False when no runtime of this server can hold loaded models: none can before torch is imported (a warm
    start draws its page without it), and asking the registry would import it."""
    return "torch" in sys.modules


def load_runtime(path: Path | None = None, *, load_models: bool = True,
                 endpoint: str | None = None) -> ExperimentRuntime | None:
    """The shared runtime of the session's experiment (at `endpoint`, default the session's choice), or None after
    showing an error that says how to fix it."""
    from ..core.models import ModelLoadError

    path = path or experiment_path()
    if _file_missing(path):
        return None
    try:
        registry = _registry()
        # One runtime per version of the experiment's files (its checkpoints too) and fine-tuned endpoint.
        experiment = memo.parsed_experiment(path)
        runtime = registry.get(str(path), files_version(experiment), endpoint or endpoint_choice(experiment))
        if load_models and not runtime.models_loaded:  # load now: a broken checkpoint is reported here, not mid-page
            _load_models(runtime)
            registry.trim(keep=runtime)  # least recently used experiments go when the budget is exceeded
    except (ExperimentError, ModelLoadError, OSError, ValueError, RuntimeError) as err:
        st.error(f"Cannot load `{path.name}`: {err}")
        return None
    return runtime


def _load_models(runtime: ExperimentRuntime) -> None:
    """Load the shared runtime's models, with a progress bar while a zero-shot head is built (once per cache)."""
    slot = st.empty()

    def progress(done: int, total: int) -> None:
        slot.progress(done / total, text=f"Building the zero-shot head: {done:,} of {total:,} classes through the "
                                         "text tower (done once; later starts read it from the cache)")

    with st.spinner("Loading the models…"):
        runtime.load_models(progress)
    slot.empty()


def _parse_alpha(raw: str | None) -> float | None:
    """A finite alpha inside the extrapolation range, or None."""
    try:
        value = float(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) and ALPHA_MIN <= value <= ALPHA_MAX else None


def current_alpha() -> float:
    """The session's alpha; on a session's first run it comes from the URL (?alpha=0.35) when given."""
    if ALPHA_KEY not in st.session_state:
        raw = st.query_params.get("alpha")
        value = _parse_alpha(raw)
        if raw is not None and value is None:
            st.warning(f"Ignoring `?alpha={raw}` in the URL: use a number between {ALPHA_MIN:g} and "
                       f"{ALPHA_MAX:g}, e.g. `?alpha=0.35`. Starting at α = {PAPER_ALPHA}.")
        st.session_state[ALPHA_KEY] = PAPER_ALPHA if value is None else value
    return float(st.session_state[ALPHA_KEY])


def set_alpha(value: float) -> None:
    """Change the session's alpha (and the shareable URL)."""
    st.session_state[ALPHA_KEY] = round(float(value), 4)
    st.query_params["alpha"] = f"{st.session_state[ALPHA_KEY]:g}"


def _snap(alpha: float) -> float:
    """The slider position for an alpha (nearest grid value inside [0, 1])."""
    return min(ALPHA_GRID, key=lambda a: abs(a - alpha))


def alpha_controls() -> float:
    """Slider (grid, 0..1) and number input (any alpha, extrapolation allowed), kept in sync; returns alpha."""
    alpha = current_alpha()
    # Widgets follow the shared alpha only when it moved since they were last synced (other widget, page or URL),
    # and only where they differ: a rerun that merely redraws (e.g. the sweep filling in) must not push a stale
    # value over a key press that is still on its way from the browser.
    ss = st.session_state
    if ss.get(SYNCED_KEY) != alpha or ss.get("alpha_slider") is None or ss.get("alpha_number") is None:
        if ss.get("alpha_slider") is None or abs(ss["alpha_slider"] - _snap(alpha)) > 1e-9:
            ss["alpha_slider"] = _snap(alpha)
        if ss.get("alpha_number") is None or abs(ss["alpha_number"] - alpha) > 1e-9:
            ss["alpha_number"] = alpha
        ss[SYNCED_KEY] = alpha
    left, right = st.columns([3, 1])
    left.slider("α: 0 = zero-shot, 1 = fine-tuned", 0.0, 1.0, step=0.05, key="alpha_slider",
                on_change=lambda: set_alpha(st.session_state["alpha_slider"]),
                help="Mixing coefficient of the weight-space ensemble θ_α = (1 − α)·θ_zero-shot + α·θ_fine-tuned.")
    position = alpha_position(alpha)
    if position:  # the slider holds grid values in 0..1 only: say where alpha really is
        left.markdown(f":red[**{position}**]")
    # A form: its number is sent only on submit (Enter or the button). Outside a form the browser would send its
    # not-yet-updated number with every slider rerun, and that stale value would drag alpha back. Its "Press Enter
    # to submit form" hint is hidden: in a quarter-width box it covered the typed value (Enter and the button say it).
    box = right.container(key=EXACT_BOX)
    box.html(f"<style>.st-key-{EXACT_BOX} [data-testid='InputInstructions'] {{display: none}}</style>")
    with box.form("exact_alpha", border=False):
        st.number_input("exact α", ALPHA_MIN, ALPHA_MAX, step=0.01, format="%.3f", key="alpha_number",
                        help="Any α, including off-grid values and extrapolation (< 0 or > 1); Enter applies it.")
        st.form_submit_button("Set α", key="alpha_submit",
                              on_click=lambda: set_alpha(st.session_state["alpha_number"]))
    st.query_params["alpha"] = f"{alpha:g}"
    return alpha


METHOD_KEY = "wiseft_method"  # this session's merge method and control values (not a widget key: kept across pages)
PLAIN_METHOD = "wiseft"  # core.merging.registry.PLAIN, named here so the warm start imports no torch


def method_choice() -> tuple[str, dict]:
    """The session's merge method and its parameter values (α aside); WiSE-FT's straight line until one is picked."""
    name, params = st.session_state.get(METHOD_KEY, (PLAIN_METHOD, {}))
    return name, dict(params)


def set_method(name: str, params: dict) -> None:
    """Switch this session to another merge method or control values (only this session's state changes)."""
    st.session_state[METHOD_KEY] = (name, dict(params))
