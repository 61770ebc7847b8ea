"""Upload page: files, examples of the evaluation sets, a drawing or a camera snapshot through the three models."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import streamlit as st

from ..data.images import DEFAULT_MAX_BYTES, UPLOAD_TYPES
from ..data.sets import EvalSet
from ..evaluation.predict import (
    ImageAnalysis,
    TopK,
    analyse_files,
    analyse_images,
    drawing_picture,
    example_indices,
    set_example,
)
from ..evaluation.runtime import ExperimentRuntime
from ..presentation import plots
from ..store.keys import files_version
from . import merge_panel, state
from .memo import Memo

MAX_UPLOAD_MB = max(1, DEFAULT_MAX_BYTES // 2**20)
MODEL_LABELS = {"zeroshot": "zero-shot (α = 0)", "alpha": "WiSE-FT at α", "finetuned": "fine-tuned (α = 1)"}
SOURCES = {"files": "Upload files", "examples": "Examples from the sets", "draw": "Draw", "camera": "Camera"}
EXAMPLES = 8  # thumbnails offered per set
CANVAS_SIDE = 280


def _table(top: TopK) -> pa.Table:
    # An Arrow table, which Streamlit sends as it is: a DataFrame cost 2 ms per table to convert, on every rerun.
    return pa.table({"class": top.classes, "probability": [round(p, 3) for p in top.probs]})


def show_analysis(item: ImageAnalysis, alpha: float, key: str, method: str = "WiSE-FT") -> None:
    """One image's card: thumbnail, three top-5 tables (marked right or wrong when the truth is known), the chart;
    `method` names the merge method whose θ at α the middle table is."""
    if item.error:
        st.error(f"**{item.name}**: {item.error}")
        return
    assert item.image is not None  # every analysis without an error has its picture (analyse_files, set_example)
    with st.container(border=True):
        st.markdown(f"**{item.name}**" + (f" · true class: **{item.truth}**" if item.truth else ""))
        cols = st.columns([1, 2, 2, 2])
        cols[0].image(item.image, width=128)
        for col, (label, title) in zip(cols[1:], MODEL_LABELS.items(), strict=True):
            verdict = ""
            if item.truth:
                verdict = " ✓" if item.top[label].classes[0] in item.right else " ✗"
            col.caption(title.replace("WiSE-FT", method).replace("at α", f"at α = {alpha:g}") + verdict)
            col.dataframe(_table(item.top[label]), hide_index=True, width="stretch")
        true_line = item.right[0] if item.right else item.truth  # a class name the chart knows
        st.plotly_chart(plots.probability_vs_alpha(item.curve, alpha, true_line), key=f"upload_curve_{key}")
        if item.extra is not None:
            st.caption("Zero-shot with your extra class names")
            st.dataframe(_table(item.extra), hide_index=True)


def _files() -> list[tuple[str, bytes]]:
    files = st.file_uploader("Images (png, jpg, webp, bmp, gif: first frame, tiff)", type=UPLOAD_TYPES,
                             accept_multiple_files=True, key="uploads", max_upload_size=MAX_UPLOAD_MB)
    if not files:
        st.info("Upload one or more images to see what zero-shot, WiSE-FT at α and fine-tuned predict.")
    return [(f.name, f.getvalue()) for f in files or ()]


def _pick_example(set_name: str, index: int) -> None:
    st.session_state["example_pick"] = (set_name, index)


_THUMBNAILS = Memo(256)  # (set key, index) -> PNG bytes; a memo, not st.cache_resource: its key hashing cost more


def _thumbnail(set_key: str, index: int, ev: EvalSet) -> bytes:
    """Image `index` of a set as a 96-pixel PNG, made once per server: every student's page shows the same ones on
    every rerun, and encoding them again each time cost more than the model's forward pass."""
    def png() -> bytes:
        out = io.BytesIO()
        ev.picture(index, size=96).save(out, format="PNG")
        return out.getvalue()

    return _THUMBNAILS.get((set_key, index), png)


def _examples(runtime: ExperimentRuntime) -> list[ImageAnalysis]:
    """A row of thumbnails from one set, each one click away from its predictions."""
    set_name = st.selectbox("Set", runtime.set_names, key="example_set",
                            help="Images of the experiment's own sets, with their true class.")
    ev = runtime.eval_set(set_name)
    names = ev.class_names(runtime.experiment.classnames)
    indices = example_indices(runtime, set_name, EXAMPLES)
    # Keyed like the shared runtime (the experiment's files as they stand), so a rewritten set is seen with it.
    set_key = f"{runtime.experiment.path}|{files_version(runtime.experiment)}|{runtime.experiment.endpoint}|{set_name}"
    for col, index in zip(st.columns(len(indices) or 1), indices, strict=False):
        # Named PNG: as bytes of an unnamed format Streamlit re-encoded every thumbnail as JPEG on every rerun.
        col.image(_thumbnail(set_key, int(index), ev), caption=names[int(ev.labels[index])], output_format="PNG")
        col.button("Predict", key=f"example_{set_name}_{index}", on_click=_pick_example, args=(set_name, index))
    pick = st.session_state.get("example_pick")
    if not pick or pick[0] not in runtime.set_names:
        st.info("Click an image's **Predict** to see what the three models make of it.")
        return []
    return [set_example(runtime, *pick)]


def drawing_items() -> list[ImageAnalysis]:
    """A drawing canvas; the drawing as an image to analyse once something is drawn (the Lesson page uses it too)."""
    from streamlit_drawable_canvas import st_canvas

    st.caption("Draw a shape with the mouse (or a finger). On the demo, a drawing is a sketch-domain shift made by "
               "hand: black strokes on white, like the world's sketches.")
    canvas = st_canvas(stroke_width=6, stroke_color="#000000", background_color="#ffffff", height=CANVAS_SIDE,
                       width=CANVAS_SIDE, drawing_mode="freedraw", return_image_data=True, key="canvas")
    picture = drawing_picture(canvas.image_data)
    if picture is None:
        st.info("Draw something: the three models predict it as soon as you lift the pen.")
        return []
    return [ImageAnalysis("your drawing", picture)]


def _camera() -> list[tuple[str, bytes]]:
    shot = st.camera_input("Take a picture", key="camera")
    if shot is None:
        st.info("Take a snapshot with your camera (the browser asks for permission first).")
        return []
    return [("camera snapshot", shot.getvalue())]


def upload_page(runtime: ExperimentRuntime) -> None:
    """The whole upload page below the title: where the images come from, then α and the predictions."""
    classes = ", ".join(runtime.experiment.classnames[:20]) + (" …" if len(runtime.experiment.classnames) > 20 else "")
    st.caption(f"Classes of this experiment: {classes}")
    source = st.radio("Image source", list(SOURCES), format_func=SOURCES.get, horizontal=True, key="upload_source")
    extra_text = st.text_input("Extra class names for zero-shot (comma separated)", key="extra_classes",
                               placeholder="e.g. a dog, a teapot",
                               help="Zero-shot CLIP can score any text: these are added to the experiment's classes.")
    extra = [e.strip() for e in extra_text.split(",") if e.strip()]
    files: list[tuple[str, bytes]] = []
    items: list[ImageAnalysis] = []
    if source == "files":
        files = _files()
    elif source == "examples":
        items = _examples(runtime)
    elif source == "draw":
        items = drawing_items()
    else:
        files = _camera()
    predictions(runtime, files, items, extra, source == "files")


@st.fragment
def predictions(runtime: ExperimentRuntime, files: list[tuple[str, bytes]], items: list[ImageAnalysis],
                extra: list[str], uploaded: bool) -> None:
    """The α controls and the three models' predictions of the images. A fragment: moving α reruns this part
    alone, not the sidebar, the source picker or the example thumbnails, which were about half of the server's
    work per α change (in a classroom, every student's change waits for the others' in one interpreter)."""
    alpha = state.alpha_controls()
    if not files and not items:
        return
    predictor = merge_panel.method_runtime(runtime)  # the merge method picked in the Explorer, else the line
    method = "WiSE-FT" if predictor is runtime else merge_panel.title()
    with st.spinner("Predicting…"), runtime.borrow_working(alpha if predictor is runtime else None) as working:
        analyses = (analyse_files(predictor, working, files, alpha, extra) if files
                    else analyse_images(predictor, working, items, alpha, extra))
    if uploaded:
        st.caption(f"{sum(a.error is None for a in analyses)} of {len(analyses)} file(s) predicted.")
    for i, item in enumerate(analyses):
        show_analysis(item, alpha, f"{i}_{hashlib.sha1(item.name.encode()).hexdigest()[:8]}", method)
