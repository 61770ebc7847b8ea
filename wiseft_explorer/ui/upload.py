"""Upload page: decode many files, top-5 of zero-shot / alpha / fine-tuned, probability vs alpha, extra classes."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st
from PIL import Image

from .. import plots
from ..curves import ALPHA_GRID
from ..images import DEFAULT_MAX_BYTES, UPLOAD_TYPES, decode_many
from ..predict import (
    TopK,
    curve_frame,
    predict_three,
    preprocess,
    probability_along_alpha,
    zero_shot_with_extra,
)
from ..runtime import ExperimentRuntime
from . import state

MAX_UPLOAD_MB = max(1, DEFAULT_MAX_BYTES // 2**20)
MODEL_LABELS = {"zeroshot": "zero-shot (α = 0)", "alpha": "WiSE-FT at α", "finetuned": "fine-tuned (α = 1)"}


@dataclass
class UploadAnalysis:
    """One uploaded file: its picture and predictions, or the error that refused it."""

    name: str
    image: Image.Image | None = None
    error: str | None = None
    top: dict[str, TopK] = field(default_factory=dict)  # model label -> top-5
    curve: pd.DataFrame | None = None  # (alpha, class, probability) of the top classes
    extra: TopK | None = None  # zero-shot over the experiment's classes plus the user's extra names


def analyse_uploads(runtime: ExperimentRuntime, working, files: Sequence[tuple[str, bytes]], alpha: float,
                    extra: Sequence[str] = ()) -> list[UploadAnalysis]:
    """Decode every file (bad ones become errors naming the file) and predict the good ones as one batch."""
    decoded = decode_many(files, max_bytes=DEFAULT_MAX_BYTES)
    out = [UploadAnalysis(d.name, d.image, None if d.ok else d.error.reason) for d in decoded]
    good = [a for a in out if a.image is not None]
    if not good:
        return out
    images = preprocess(runtime, [a.image for a in good])
    top = predict_three(runtime, images, alpha, working)
    probs = probability_along_alpha(runtime, images, working, ALPHA_GRID)  # (A, N, C); working is restored
    extras = zero_shot_with_extra(runtime, images, extra) if any(e.strip() for e in extra) else None
    names = runtime.experiment.classnames
    for i, item in enumerate(good):
        item.top = {label: top[label][i] for label in MODEL_LABELS}
        item.curve = curve_frame(probs[:, i], names, ALPHA_GRID)
        item.extra = extras[i] if extras else None
    return out


def _table(top: TopK) -> pd.DataFrame:
    return pd.DataFrame({"class": top.classes, "probability": [round(p, 3) for p in top.probs]})


def show_analysis(item: UploadAnalysis, alpha: float, key: str) -> None:
    """One file's card: thumbnail, three top-5 tables, the probability-vs-alpha chart."""
    if item.error:
        st.error(f"**{item.name}**: {item.error}")
        return
    with st.container(border=True):
        st.markdown(f"**{item.name}**")
        cols = st.columns([1, 2, 2, 2])
        cols[0].image(item.image, width=128)
        for col, (label, title) in zip(cols[1:], MODEL_LABELS.items(), strict=True):
            col.caption(title.replace("at α", f"at α = {alpha:g}"))
            col.dataframe(_table(item.top[label]), hide_index=True, width="stretch")
        st.plotly_chart(plots.probability_vs_alpha(item.curve, alpha), key=f"upload_curve_{key}")
        if item.extra is not None:
            st.caption("Zero-shot with your extra class names")
            st.dataframe(_table(item.extra), hide_index=True)


def upload_page(runtime: ExperimentRuntime) -> None:
    """The whole upload page below the title."""
    alpha = state.alpha_controls()
    classes = ", ".join(runtime.experiment.classnames[:20]) + (" …" if len(runtime.experiment.classnames) > 20 else "")
    st.caption(f"Classes of this experiment: {classes}")
    files = st.file_uploader("Images (png, jpg, webp, bmp, gif: first frame, tiff)", type=UPLOAD_TYPES,
                             accept_multiple_files=True, key="uploads", max_upload_size=MAX_UPLOAD_MB)
    extra_text = st.text_input("Extra class names for zero-shot (comma separated)", key="extra_classes",
                               placeholder="e.g. a dog, a teapot",
                               help="Zero-shot CLIP can score any text: these are added to the experiment's classes.")
    if not files:
        st.info("Upload one or more images to see what zero-shot, WiSE-FT at α and fine-tuned predict.")
        return
    extra = [e.strip() for e in extra_text.split(",") if e.strip()]
    batch = [(f.name, f.getvalue()) for f in files]
    with st.spinner(f"Predicting {len(batch)} file(s)…"), runtime.borrow_working() as working:
        analyses = analyse_uploads(runtime, working, batch, alpha, extra)
    ok = sum(a.error is None for a in analyses)
    st.caption(f"{ok} of {len(analyses)} file(s) predicted.")
    for i, item in enumerate(analyses):
        show_analysis(item, alpha, f"{i}_{hashlib.sha1(item.name.encode()).hexdigest()[:8]}")
