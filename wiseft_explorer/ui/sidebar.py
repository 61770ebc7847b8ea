"""The sidebar shared by every page: experiment picker, device, model names and parameter counts."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from ..experiment import REPO_ROOT
from ..models import parameter_count
from ..runtime import ExperimentRuntime
from . import state

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
    pair, exp = _runtime.models, _runtime.experiment
    return {"zero-shot": f"{exp.zeroshot.name} ({parameter_count(pair.zeroshot) / 1e6:.2f} M params)",
            "fine-tuned": f"{exp.finetuned.name} ({parameter_count(pair.finetuned) / 1e6:.2f} M params)",
            "device": str(pair.device), "classes": str(len(exp.classnames)),
            "interpolated weights": f"{_runtime.space.num_weights / 1e6:.2f} M", "head policy": exp.head_policy}


def sidebar() -> ExperimentRuntime | None:
    """Draw the sidebar and return the session's runtime (None when it cannot be loaded; the error is shown)."""
    st.sidebar.header("WiSE-FT Explorer")
    experiment_picker()
    runtime = state.load_runtime()
    if runtime is None:
        return None
    exp = runtime.experiment
    st.sidebar.markdown(f"**{exp.name}**")
    facts = _model_facts(str(exp.path), exp.path.stat().st_mtime_ns if exp.path else 0, runtime)
    st.sidebar.markdown("\n".join(f"- **{k}**: {v}" for k, v in facts.items()))
    st.sidebar.caption("Sets: " + ", ".join(runtime.set_names))
    for line in runtime.data_warnings():
        st.sidebar.warning(line + " — fix or remove the file(s) and reload.")
    return runtime
