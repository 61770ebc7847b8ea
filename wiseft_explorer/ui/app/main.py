"""The app's entry script: `wiseft-explorer app`, `streamlit run` of this file, or the checkout's `app.py`.

The landing page (Explorer) is a function of ui/explorer.py; Gallery, Upload, Models and Lesson are the scripts
beside this one. Imports are absolute: Streamlit runs this file as `__main__`, outside its package. They are made
in main(): image-loader workers (multiprocessing's forkserver) run the main script again as `__mp_main__`, and
with the imports at the top each one loaded Streamlit and every page before its first batch (0.6 s)."""

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def main() -> None:
    """Run one rerun of the multipage app: the navigation over the Explorer and the four page scripts."""
    import streamlit as st

    from wiseft_explorer.ui import preload
    from wiseft_explorer.ui.explorer import explorer_page

    preload.start()  # begun with the server by `wiseft-explorer app`; under a plain `streamlit run`, here (once)
    # st.navigation names the landing page "Explorer" (with plain pages/ discovery it would be called "app").
    st.navigation([
        # Material icons: emoji showed as empty boxes on machines without an emoji font (headless chromium).
        st.Page(explorer_page, title="Explorer", icon=":material/explore:", default=True),
        st.Page(_HERE / "1_Gallery.py", title="Gallery", icon=":material/photo_library:"),
        st.Page(_HERE / "2_Upload.py", title="Upload", icon=":material/add_photo_alternate:"),
        st.Page(_HERE / "3_Models.py", title="Models", icon=":material/tune:"),
        st.Page(_HERE / "4_Lesson.py", title="Lesson", icon=":material/school:"),
    ]).run()


if __name__ == "__main__":
    main()
