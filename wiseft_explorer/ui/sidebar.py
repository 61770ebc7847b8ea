"""The sidebar shared by every page: experiment picker, device, model names and parameter counts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from ..experiment.locations import ENV_EXPERIMENTS_DIR, user_experiments_dir
from ..store.keys import files_version
from . import memo, state

if TYPE_CHECKING:
    from ..evaluation.runtime import ExperimentRuntime

_OTHER = "Another file (path)…"
_IMPORTED_KEY = "wiseft_imported"  # the note shown once after an import (the page reruns to draw the results)


def experiment_picker() -> None:
    """Choose the experiment: a built-in one, any TOML in the user's experiments folder, or a typed path."""
    files = state.experiment_files()
    labels = [memo.label(p) for p in files] + [_OTHER]
    current = state.experiment_path()
    index = files.index(current) if current in files else 0
    choice = st.sidebar.selectbox("Experiment", labels, index=index, key="experiment_choice",
                                  help="Default: the built-in demo. Your own experiment files are listed from "
                                       f"`{user_experiments_dir()}` (set {ENV_EXPERIMENTS_DIR} to use another folder).")
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
def _model_facts(path: str, version: str, endpoint: str | None, _runtime: ExperimentRuntime) -> dict[str, str]:
    """Names and sizes (cached: counting parameters walks every tensor)."""
    return _runtime.describe()


def list_facts(name: str, facts: dict[str, str], set_names: list[str]) -> None:
    """The experiment's name, its models and its sets in the sidebar."""
    st.sidebar.markdown(f"**{name}**")
    st.sidebar.markdown("\n".join(f"- **{k}**: {v}" for k, v in facts.items()))
    st.sidebar.caption("Sets: " + ", ".join(set_names))


def sidebar_top() -> None:
    """The sidebar's header, experiment and endpoint pickers and 'Open results' (no models needed)."""
    st.sidebar.header("WiSE-FT Explorer")
    experiment_picker()
    endpoint_picker()
    open_results()


def endpoint_picker() -> None:
    """Choose the fine-tuned endpoint the slider, the Gallery and Upload use (experiments with several)."""
    from ..experiment.spec import ExperimentError

    try:
        experiment = memo.parsed_experiment(state.experiment_path())
    except (ExperimentError, OSError, ValueError):
        return  # the page reports a broken file where it loads it
    names = experiment.endpoint_names
    if len(names) < 2:
        return
    current = state.endpoint_choice(experiment)
    assert current is not None  # with two or more endpoints one is always chosen
    choice = st.sidebar.selectbox("Fine-tuned endpoint", names, index=names.index(current), key="endpoint_choice",
                                  help="Each endpoint is a WiSE-FT path of its own in the plots; the α slider, the "
                                       "Gallery and Upload use the one chosen here.")
    if choice != current:
        state.set_endpoint(choice)


def open_results() -> None:
    """Import a sweep computed elsewhere (its JSONL and the per-image file next to it) for this experiment."""
    note = st.session_state.pop(_IMPORTED_KEY, None)
    if note:
        st.sidebar.success(note)
    with st.sidebar.expander("Open results…"):
        path = st.text_input("Sweep JSONL (`sweep --out`)", key="results_path", placeholder="/shared/results.jsonl",
                             help="A sweep run on another machine or a cluster: its .per-image.safetensors file "
                                  "must lie next to it. It is checked against this experiment's models and images.")
        if st.button("Import", key="results_import", disabled=not path):
            _import(path.strip())


def _import(path: str) -> None:
    from ..evaluation.result_files import ResultsError, import_results
    from . import results

    runtime = state.load_runtime(load_models=False)  # importing needs the sets' indexes, never the models
    if runtime is None:
        return
    try:
        result = import_results(runtime, path)
    except (ResultsError, OSError, ValueError) as err:
        st.error(f"Cannot open these results: {err}")
        return
    results.adopt(runtime, result)
    st.session_state[_IMPORTED_KEY] = f"Imported `{path}`: computed on {provenance_text(result.provenance)}."
    st.rerun()


def provenance_text(records: list[dict]) -> str:
    """Where results were computed, for the sidebar."""
    from ..core.distributed import provenance_line

    return "; ".join(provenance_line(r) for r in records) or "this machine"


def results_origin(records: list[dict]) -> None:
    """The sidebar's line saying where the results shown were computed (machine, processes, date)."""
    if records:
        st.sidebar.caption(f"Results computed on {provenance_text(records)}")


def sidebar() -> ExperimentRuntime | None:
    """Draw the sidebar and return the session's runtime (None when it cannot be loaded; the error is shown).

    When a finished sweep is stored (computed here, on a cluster, or imported), the models it lists come from it
    and nothing is loaded: a page that only shows the sweep needs no model.
    """
    sidebar_top()
    experiment = state.load_experiment_file()
    if experiment is None:
        return None
    curves = state.finished_curves(experiment)
    if curves is not None and curves.about:
        list_facts(experiment.name, curves.about, [s.name for s in experiment.eval_sets])
        return state.load_runtime(load_models=False)
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
    list_facts(exp.name, _model_facts(str(exp.path), files_version(exp), exp.endpoint, runtime), runtime.set_names)
    for line in runtime.model_notes():
        st.sidebar.info(line)
    for line in runtime.data_warnings():
        st.sidebar.warning(line + " — fix or remove the file(s) and reload.")
