"""Models: configure a real open_clip experiment without TOML, run its sweep, export the model at alpha."""

import streamlit as st

from wiseft_explorer.ui.builder import builder_section, export_section
from wiseft_explorer.ui.errors import shown_errors
from wiseft_explorer.ui.sidebar import sidebar

st.set_page_config(page_title="Models · WiSE-FT Explorer", page_icon=":material/tune:", layout="wide")
runtime = sidebar()
st.title("Models")
builder_section()
if runtime is not None:
    with shown_errors("The export is not available"):
        export_section(runtime)
