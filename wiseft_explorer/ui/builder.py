"""Models page: build or edit an experiment without writing TOML, check its folders, save, sweep; export theta_alpha."""

from __future__ import annotations

import functools
from pathlib import Path

import streamlit as st

from ..data.validate import SetCheck, check_experiment
from ..evaluation.export import export_bytes
from ..evaluation.runtime import ExperimentRuntime
from ..experiment.forms import (
    Form,
    default_form,
    experiment_to_toml,
    form_experiment,
    form_of,
    preset_choices,
    relative_paths_note,
    slug,
    weight_help,
)
from ..experiment.locations import user_experiments_dir
from ..experiment.parse import load_experiment
from ..experiment.presets import PRESETS
from ..experiment.spec import HEAD_POLICIES, ExperimentError
from ..store.atomic import atomic_write_text
from . import results, state
from .errors import shown_errors

KEY = "b_"  # widget keys of the form: "b_" + the field names of forms.py
MAX_SHIFTS = 8
_CHECKS = "builder_checks"


def _fill(form: Form) -> None:
    """Put form values into the widgets (a callback: runs before the widgets are drawn again)."""
    for name, value in form.items():
        st.session_state[KEY + name] = value


def _open_existing() -> None:
    """Pick an experiment file and load it into the form to edit it."""
    files = [p for p in state.experiment_files() if p.is_file()]
    if not files:
        return
    c1, c2 = st.columns([3, 1])
    choice = c1.selectbox("Open an existing experiment to edit", files, key="builder_open",
                          format_func=lambda p: p.name)

    def load() -> None:
        try:
            form = form_of(load_experiment(choice, for_finetuning=True))
        except (ExperimentError, OSError) as err:
            st.session_state["builder_open_error"] = str(err).splitlines()[0]
            return
        st.session_state.pop("builder_open_error", None)
        _fill({**form, "overwrite": True})

    c2.button("Load into the form", key="builder_load", on_click=load)
    if st.session_state.get("builder_open_error"):
        st.error(f"Cannot open it: {st.session_state['builder_open_error']}")


_PRESET_HELP = ("A dataset of the paper: its classes, labels and scoring come with it (ImageNet-R/A restricted to "
                "their 200 classes, ObjectNet's max over mapped classes). Leave [classes] empty to use its class "
                "list. Expected folders:\n\n" + "\n\n".join(f"- **{p.title}**: {p.layout}" for p in PRESETS.values()))


def _set_fields(container, prefix: str, label: str, shift: bool) -> None:
    with container:
        cols = st.columns([2, 2, 3, 2, 1] if shift else [2, 3, 2, 1])
        if shift:
            cols[0].text_input("name", key=f"{KEY}{prefix}_name", placeholder="preset's title",
                               help="The set's name on the pages; empty: the preset's title (or shift-N).")
            cols = cols[1:]
        cols[0].selectbox("dataset preset", preset_choices(), key=f"{KEY}{prefix}_preset", help=_PRESET_HELP,
                          format_func=lambda k: PRESETS[k].title if k else "my own folder")
        cols[1].text_input(f"{label} folder", key=f"{KEY}{prefix}_source", placeholder="/data/imagenet-r",
                           help="Your own folder: one subfolder per class, `folder/<class>/<image>`. A preset: "
                                "the dataset's folder as downloaded (see the preset's help).")
        cols[2].text_input("mapping file", key=f"{KEY}{prefix}_mapping", placeholder="optional",
                           help="Optional. JSON object: folder name -> class name (e.g. WordNet ids -> names). "
                                "Not with a preset.")
        cols[3].number_input("limit", 0, step=100, key=f"{KEY}{prefix}_limit",
                             help="0 = every image. Else a seeded sample of this many images, every class in "
                                  "proportion.")
        if shift:
            st.text_area("class subset (optional; names, comma or one per line)", key=f"{KEY}{prefix}_classes",
                         height=68, help="Logits are restricted to these classes before the argmax, as the paper "
                                         "does for ImageNet-R and -A. Leave empty to score against every class.")


def _form() -> Form | None:
    """The form; its fields when 'Validate and save' was pressed, else None."""
    for name, value in default_form().items():
        st.session_state.setdefault(KEY + name, value)
    st.columns([1, 3])[0].number_input(
        "number of shift sets", 0, MAX_SHIFTS, key=KEY + "nshifts",
        help="How many distribution-shift test sets the form below has boxes for (at most "
             f"{MAX_SHIFTS}); each is scored by the same models as the ID test set. 0: ID only.")
    with st.form("builder"):
        st.markdown("**Zero-shot model** (open_clip, or a Hugging Face transformers CLIP; fine-tuned: also timm)")
        c1, c2, c3 = st.columns(3)
        c1.text_input("Experiment name", key=KEY + "name")
        c2.text_input("open_clip model name", key=KEY + "model", placeholder="ViT-B-32")
        c3.text_input("pretrained tag or checkpoint path", key=KEY + "pretrained",
                      placeholder="laion2b_s34b_b79k or a file",
                      help=weight_help("pretrained") + "  \nA tag must already be in the local cache when the "
                           "machine is offline.")
        c1, c2 = st.columns(2)
        c1.text_input("custom model config JSON (optional)", key=KEY + "config")
        c2.text_input("fine-tuned checkpoint path (.safetensors, transformers: or timm: folder)", key=KEY + "finetuned",
                      help=weight_help("finetuned"))
        st.markdown("**Classes and prompts** (in the order the fine-tuned checkpoint was trained with)")
        c1, c2 = st.columns(2)
        c1.text_area("class names, one per line", key=KEY + "classes",
                     help="Or the name of a built-in list: imagenet (open_clip's 1,000) or cifar10. Left empty, an "
                          "experiment whose ID set is a dataset preset uses that preset's classes.")
        c2.text_area("templates, one per line with {} (or openai / simple)", key=KEY + "templates",
                     help="Or a built-in prompt set: openai (open_clip's 80 ImageNet prompts), simple, cifar10.")
        st.markdown("**Datasets**")
        _set_fields(st.container(), "id", "ID test", shift=False)
        _set_fields(st.container(), "val", "held-out ID (optional, for choosing α)", shift=False)
        for i in range(int(st.session_state[KEY + "nshifts"])):
            _set_fields(st.container(border=True), f"s{i}", f"shift {i + 1}", shift=True)
        c1, c2 = st.columns(2)
        c1.selectbox("device", ["auto", "cpu", "cuda", "mps"], key=KEY + "device")
        c2.selectbox("head policy", HEAD_POLICIES, key=KEY + "head_policy")
        st.checkbox("overwrite an existing file of the same name", key=KEY + "overwrite")
        st.checkbox("score folders that cover only some classes against every class", key=KEY + "all_classes")
        if not st.form_submit_button("Validate and save"):
            return None
    return {name.removeprefix(KEY): value for name, value in st.session_state.items()
            if isinstance(name, str) and name.startswith(KEY)}


def save_experiment(form: Form, folder: Path | None = None) -> tuple[Path | None, list[SetCheck]]:
    """Validate the fields and every folder, then write <folder>/<name>.toml; (None, checks) when a check fails.

    `folder` defaults to the user's experiments folder; relative paths in the form start where the app started.
    """
    folder = folder or user_experiments_dir()
    exp = form_experiment(form, Path.cwd())
    checks = check_experiment(exp)
    if any(c.error for c in checks) or (any(c.needs_subset for c in checks) and not form.get("all_classes")):
        return None, checks
    path = folder / f"{slug(exp.name)}.toml"
    if path.exists() and not form.get("overwrite"):
        raise ExperimentError(f"{path.name} already exists; tick 'overwrite' or choose another experiment name")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, experiment_to_toml(exp))
    return path, checks


def _show_checks(checks: list[SetCheck], total: int) -> None:
    """Each folder's findings; a restrict button for a shift that covers fewer classes than the experiment."""
    for i, check in enumerate(checks):
        if check.error:
            st.error(check.summary(total))
        elif check.needs_subset:
            st.warning(f"{check.summary(total)}, but it has no class subset: its images would be scored against "
                       f"all {total} classes. Restrict its logits to its own classes (as the paper does for "
                       "ImageNet-R and -A), or tick 'score … against every class'.")
            prefix = _prefix_of(check.name)
            if prefix:
                st.button(f"Restrict {check.name} to its {len(check.covered)} classes", key=f"restrict_{i}",
                          on_click=_fill, args=({f"{prefix}_classes": "\n".join(check.covered)},))
        else:
            st.caption(check.summary(total))


def _prefix_of(name: str) -> str | None:
    """The form prefix of the shift set named `name`."""
    for i in range(int(st.session_state.get(KEY + "nshifts", 0))):
        if (st.session_state.get(f"{KEY}s{i}_name") or f"shift-{i}").strip() == name:
            return f"s{i}"
    return None


def builder_section() -> None:
    """Open or fill the form -> checked folders -> a saved TOML, then (optionally) the sweep with progress."""
    st.subheader("Configure a real experiment")
    st.caption(relative_paths_note(Path.cwd()))
    _open_existing()
    form = _form()
    if form is not None:
        with shown_errors("Not saved"):
            path, checks = save_experiment(form)
            st.session_state[_CHECKS] = (checks, len(form_experiment(form, Path.cwd()).classnames))
            if path is None:
                st.error("Not saved: fix the folders below first.")
            else:
                st.session_state["built_experiment"] = str(path)
                st.success(f"Saved `{path}`. It is now in the sidebar's experiment list.")
    if _CHECKS in st.session_state:
        _show_checks(*st.session_state[_CHECKS])
    built = st.session_state.get("built_experiment")
    if built and st.button(f"Use `{Path(built).name}` and run its sweep", key="run_built"):
        state.set_experiment(built)
        runtime = state.load_runtime(Path(built))
        if runtime is not None:
            with shown_errors("The sweep failed"):
                results.compute_sweep(runtime)
                st.success("Sweep done: the Explorer and Gallery pages now show this experiment.")


def export_section(runtime: ExperimentRuntime) -> None:
    """Download theta_alpha as .safetensors, written when the button is clicked and not kept in the session."""
    st.subheader("Export the interpolated model")
    alpha = state.alpha_controls()
    fmt = st.radio("format", ["classifier", "open_clip"], horizontal=True, key="export_format",
                   help="classifier: the classifier θ_α, image tower + head (this project's format); open_clip: a "
                        "full state dict open_clip loads as is, which is not the classifier θ_α (θ_α's image tower, "
                        "the zero-shot text tower, no head): θ_α's head is a second download.")
    name = f"{slug(runtime.experiment.name)}-alpha{alpha:g}-{fmt}"
    # A callable: Streamlit runs it on click, in its own thread, and serves its bytes; no copy of the model (577 MB
    # for ViT-B-32 in open_clip format) stays in the session after the download.
    st.download_button(f"Download the {fmt} model at α = {alpha:g} (.safetensors)",
                       functools.partial(export_bytes, runtime, alpha, fmt),
                       file_name=f"{name}.safetensors",
                       mime="application/octet-stream", key="export_download", on_click="ignore")
    if fmt == "open_clip":
        st.caption("Not the classifier θ_α: θ_α's image tower with the zero-shot text tower. θ_α's head (tensors "
                   "`weight` and `bias`, applied to the normalised image features) is a separate file:")
        st.download_button(f"Download θ_α's head at α = {alpha:g} (.safetensors)",
                           functools.partial(export_bytes, runtime, alpha, head=True),
                           file_name=f"{name}.head.safetensors",
                           mime="application/octet-stream", key="export_head_download", on_click="ignore")
