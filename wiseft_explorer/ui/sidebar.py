"""The sidebar shared by every page: experiment picker, device, model names and parameter counts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from ..experiment import REPO_ROOT
from . import state

if TYPE_CHECKING:
    from ..runtime import ExperimentRuntime

_OTHER = "Another file (path)…"


def _label(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def experiment_picker() -> None:
    """Choose the experiment: any TOML under experiments/ or a path typed by the user."""
    files = state.experiment_files()
    labels = [_label(p) for p in files] + [_OTHER]
    current = state.experiment_path()
    index = files.index(current) if current in files else 0
    choice = st.sidebar.selectbox("Experiment", labels, index=index, key="experiment_choice",
                                  help="Default: the built-in demo (experiments/demo.toml).")
    if choice == _OTHER:
        typed = st.sidebar.text_input("Experiment TOML path", key="experiment_path_input",
                                      placeholder="/path/to/experiment.toml")
        if typed:
            path = Path(typed).expanduser()
            if path.is_file() and path.suffix == ".toml":
                state.set_experiment(path)
            else:
                st.sidebar.error(f"`{typed}` is not a .toml file; type the path of an experiment file.")
    else:
        state.set_experiment(files[labels.index(choice)])


@st.cache_data(max_entries=16, show_spinner=False)
def _model_facts(path: str, mtime_ns: int, _runtime: ExperimentRuntime) -> dict[str, str]:
    """Names and sizes (cached: counting parameters walks every tensor)."""
    return _runtime.describe()


def list_facts(name: str, facts: dict[str, str], set_names: list[str]) -> None:
    """The experiment's name, its models and its sets in the sidebar."""
    st.sidebar.markdown(f"**{name}**")
    st.sidebar.markdown("\n".join(f"- **{k}**: {v}" for k, v in facts.items()))
    st.sidebar.caption("Sets: " + ", ".join(set_names))


def sidebar_top() -> None:
    """The sidebar's header and experiment picker (no models needed)."""
    st.sidebar.header("WiSE-FT Explorer")
    experiment_picker()


def sidebar() -> ExperimentRuntime | None:
    """Draw the sidebar and return the session's runtime (None when it cannot be loaded; the error is shown)."""
    sidebar_top()
    return model_details()


def model_details() -> ExperimentRuntime | None:
    """Load the session's runtime and list its models in the sidebar (None, after an error message, if it fails)."""
    runtime = state.load_runtime()
    if runtime is not None:
        runtime_details(runtime)
    return runtime


def runtime_details(runtime: ExperimentRuntime) -> None:
    """List a loaded runtime's models, sets and data warnings in the sidebar."""
    exp = runtime.experiment
    list_facts(exp.name, _model_facts(str(exp.path), exp.path.stat().st_mtime_ns if exp.path else 0, runtime),
               runtime.set_names)
    for line in runtime.model_notes():
        st.sidebar.info(line)
    for line in runtime.data_warnings():
        st.sidebar.warning(line + " — fix or remove the file(s) and reload.")
