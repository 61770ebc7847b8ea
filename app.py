"""WiSE-FT Explorer: the landing page (Explorer: live alpha, metric cards, ID-vs-shift and accuracy-vs-alpha plots)
and the navigation to the Gallery, Upload and Models pages."""

import streamlit as st

from wiseft_explorer.ui import explorer, results, state
from wiseft_explorer.ui.sidebar import sidebar


def explorer_page() -> None:
    """The Explorer page: thin, everything it draws comes from the library via wiseft_explorer.ui."""
    st.set_page_config(page_title="WiSE-FT Explorer", page_icon="🧭", layout="wide")
    runtime = sidebar()
    st.title("WiSE-FT Explorer")
    st.caption("Robust fine-tuning of zero-shot models: interpolate the weights of a zero-shot and a fine-tuned CLIP.")
    explorer.explainer()
    if runtime is None:
        st.stop()
    alpha = state.alpha_controls()
    result, complete = results.ensure_sweep(runtime, alpha)
    if result is None:
        st.stop()
    explorer.explorer_body(runtime, result, alpha, complete)
    if not complete:
        results.sweep_progress(runtime, len(result.alphas))


# st.navigation names the landing page "Explorer" (with plain pages/ discovery it would be called "app").
st.navigation([
    st.Page(explorer_page, title="Explorer", icon="🧭", default=True),
    st.Page("pages/1_Gallery.py", title="Gallery", icon="🖼️"),
    st.Page("pages/2_Upload.py", title="Upload", icon="📤"),
    st.Page("pages/3_Models.py", title="Models", icon="🧩"),
]).run()
