"""Upload: your own images through zero-shot, WiSE-FT at alpha and fine-tuned."""

import streamlit as st

from wiseft_explorer.ui.errors import shown_errors
from wiseft_explorer.ui.sidebar import sidebar
from wiseft_explorer.ui.upload import upload_page

st.set_page_config(page_title="Upload · WiSE-FT Explorer", page_icon=":material/add_photo_alternate:", layout="wide")
runtime = sidebar()
st.title("Upload images")
if runtime is not None:
    with shown_errors("The upload cannot be analysed"):
        upload_page(runtime)
