"""Models page: build an experiment without writing TOML, validate, save, sweep; export theta_alpha."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import streamlit as st

from ..experiment import EXPERIMENTS_DIR, REPO_ROOT, ExperimentError, experiment_to_toml, parse_experiment
from ..export import export_bytes
from ..runtime import ExperimentRuntime
from . import results, state


def experiment_table(form: dict) -> dict:
    """The builder's fields -> an experiment TOML table (what parse_experiment validates)."""
    def lines(text: str) -> list[str]:
        return [line.strip() for line in text.splitlines() if line.strip()]

    templates = lines(form["templates"])
    data: dict = {
        "name": form["name"].strip() or "my experiment",
        "device": form["device"], "head_policy": form["head_policy"],
        "zeroshot": {"model": form["model"].strip()},
        "finetuned": {"checkpoint": form["finetuned"].strip()},
        "classes": {"names": lines(form["classes"]),
                    "templates": templates[0] if templates in (["openai"], ["simple"]) else templates},
        "id": {"name": "ID", "source": form["id_source"].strip()},
    }
    for key, field in (("pretrained", "pretrained"), ("config", "config")):
        if form[field].strip():
            data["zeroshot"][key] = form[field].strip()
    if form["id_val"].strip():
        data["id_val"] = {"name": "ID-val", "source": form["id_val"].strip()}
    shifts = []
    for i, line in enumerate(lines(form["shifts"])):
        name, sep, source = line.partition("=")
        shifts.append({"name": name.strip(), "source": source.strip()} if sep else
                      {"name": f"shift-{i}", "source": line})
    data["shifts"] = shifts
    return data


def slug(name: str) -> str:
    """A safe file stem for an experiment name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "experiment"


def _form() -> dict | None:
    with st.form("builder"):
        st.markdown("**Zero-shot model** (open_clip)")
        c1, c2, c3 = st.columns(3)
        form = {"name": c1.text_input("Experiment name", "my experiment"),
                "model": c2.text_input("open_clip model name", placeholder="ViT-B-32"),
                "pretrained": c3.text_input("pretrained tag or checkpoint path",
                                            placeholder="laion2b_s34b_b79k or /path/open_clip_model.safetensors",
                                            help="Tags must already be in the local open_clip cache: the app "
                                                 "never downloads.")}
        c1, c2 = st.columns(2)
        form["config"] = c1.text_input("custom model config JSON (optional)")
        form["finetuned"] = c2.text_input("fine-tuned checkpoint path (.safetensors)")
        st.markdown("**Classes and prompts**")
        c1, c2 = st.columns(2)
        form["classes"] = c1.text_area("class names, one per line")
        form["templates"] = c2.text_area("templates, one per line with {} (or openai / simple)", "openai")
        st.markdown("**Datasets** (folders in ImageFolder layout: folder/<class name>/<image>)")
        c1, c2 = st.columns(2)
        form["id_source"] = c1.text_input("ID test folder")
        form["id_val"] = c2.text_input("held-out ID folder (optional, for choosing α)")
        form["shifts"] = st.text_area("shift sets, one per line: Name = /path/to/folder")
        c1, c2 = st.columns(2)
        form["device"] = c1.selectbox("device", ["auto", "cpu", "cuda", "mps"])
        form["head_policy"] = c2.selectbox("head policy", ["interpolate", "zeroshot", "finetuned"])
        form["overwrite"] = st.checkbox("overwrite an existing file of the same name")
        return form if st.form_submit_button("Validate and save") else None


def save_experiment(form: dict, folder: Path | None = None) -> Path:
    """Validate the builder's fields and write experiments/<name>.toml; raises ExperimentError with the fix."""
    folder = folder or EXPERIMENTS_DIR
    data = experiment_table(form)
    exp = parse_experiment(data, REPO_ROOT)  # relative paths start at the project folder
    path = folder / f"{slug(exp.name)}.toml"
    if path.exists() and not form.get("overwrite"):
        raise ExperimentError(f"{path.name} already exists; tick 'overwrite' or choose another experiment name")
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(experiment_to_toml(exp), encoding="utf-8")
    return path


def builder_section() -> None:
    """Form -> validation errors or a saved TOML, then (optionally) the sweep with progress."""
    st.subheader("Configure a real experiment")
    form = _form()
    if form is not None:
        try:
            path = save_experiment(form)
        except (ExperimentError, OSError) as err:
            st.error(f"Not saved: {err}")
        else:
            st.session_state["built_experiment"] = str(path)
            st.success(f"Saved `{path}`. It is now in the sidebar's experiment list.")
    built = st.session_state.get("built_experiment")
    if built and st.button(f"Use `{Path(built).name}` and run its sweep", key="run_built"):
        state.set_experiment(built)
        runtime = state.load_runtime(Path(built))
        if runtime is not None:
            results.compute_sweep(runtime)
            st.success("Sweep done: the Explorer and Gallery pages now show this experiment.")


def export_section(runtime: ExperimentRuntime) -> None:
    """Download theta_alpha as .safetensors, written when the button is clicked and not kept in the session."""
    st.subheader("Export the interpolated model")
    alpha = state.alpha_controls()
    fmt = st.radio("format", ["classifier", "open_clip"], horizontal=True, key="export_format",
                   help="classifier: image tower + head (this project's format); open_clip: a full state dict "
                        "open_clip loads as is (interpolated image tower, zero-shot text tower).")
    # A callable: Streamlit runs it on click, in its own thread, and serves its bytes; no copy of the model (577 MB
    # for ViT-B-32 in open_clip format) stays in the session after the download.
    st.download_button(f"Download the {fmt} model at α = {alpha:g} (.safetensors)",
                       functools.partial(export_bytes, runtime, alpha, fmt),
                       file_name=f"{slug(runtime.experiment.name)}-alpha{alpha:g}-{fmt}.safetensors",
                       mime="application/octet-stream", key="export_download", on_click="ignore")
