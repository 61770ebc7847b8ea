"""Gallery: eval images with zero-shot, current-alpha and fine-tuned predictions; filters; probability vs alpha."""

import streamlit as st

from wiseft_explorer.ui.errors import shown_errors
from wiseft_explorer.ui.gallery_view import gallery_page
from wiseft_explorer.ui.sidebar import sidebar

st.set_page_config(page_title="Gallery · WiSE-FT Explorer", page_icon=":material/photo_library:", layout="wide")
runtime = sidebar()
st.title("Gallery")
st.caption("Which images does fine-tuning fix or break, and which does WiSE-FT rescue?")
if runtime is not None:
    with shown_errors("The gallery cannot be shown"):
        gallery_page(runtime)
