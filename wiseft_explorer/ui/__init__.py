"""The Streamlit layer: the only package that imports streamlit (session state, cached resources, widgets)."""
