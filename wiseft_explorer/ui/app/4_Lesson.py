"""Lesson: the steps a lecturer clicks through (six; seven with a robustness line), each with its own link."""

import streamlit as st

from wiseft_explorer.ui.errors import shown_errors
from wiseft_explorer.ui.lesson_view import lesson_curves, lesson_page
from wiseft_explorer.ui.sidebar import sidebar

st.set_page_config(page_title="Lesson · WiSE-FT Explorer", page_icon=":material/school:", layout="wide")
runtime = sidebar()
st.title("Lesson: robust fine-tuning, step by step")
if runtime is not None:
    with shown_errors("The lesson cannot be shown"):
        curves = lesson_curves(runtime)
        if curves is not None:
            lesson_page(curves, runtime, runtime.experiment.endpoint)
