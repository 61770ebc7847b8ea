"""WiSE-FT Explorer: the landing page (Explorer: live alpha, metric cards, ID-vs-shift and accuracy-vs-alpha plots)
and the navigation to the Gallery, Upload, Models and Lesson pages."""

import streamlit as st

from wiseft_explorer.ui import explorer, sidebar, state
from wiseft_explorer.ui.errors import shown_errors


def explorer_page() -> None:
    """The Explorer page: thin, everything it draws comes from the library via wiseft_explorer.ui."""
    st.set_page_config(page_title="WiSE-FT Explorer", page_icon=":material/explore:", layout="wide")
    sidebar.sidebar_top()
    st.title("WiSE-FT Explorer")
    st.caption("Robust fine-tuning of zero-shot models: interpolate the weights of a zero-shot and a fine-tuned CLIP.")
    explorer.explainer()
    experiment = state.load_experiment_file()
    if experiment is None:
        st.stop()
    alpha = state.alpha_controls()
    # One slot for the sweep's notes in every kind of run, so the cards below keep their place in the page when a
    # note comes or goes (a moved element is drawn twice while Streamlit replaces the page).
    notice = st.empty()
    curves = state.warm_curves(experiment, alpha)
    others = state.other_endpoint_curves(experiment)
    if curves is not None:
        # Warm start: the stored curves answer a grid alpha, so the page is drawn before torch or a model loads.
        explorer.explorer_body(curves, alpha, curves.accuracies(curves.grid_alpha(alpha)), complete=True,
                               notice=notice, endpoint=experiment.endpoint, others=others)
        if curves.about:  # what the models are, as stored with the curves: no need to load them for this page
            sidebar.list_facts(experiment.name, curves.about, [s.name for s in experiment.eval_sets])
        else:
            sidebar.model_details()
        if len(others) < len(experiment.endpoints) - 1:  # only after the page is drawn: this imports torch
            from wiseft_explorer.ui import results

            results.other_endpoints(experiment)  # starts the missing endpoints' sweeps in the background
            results.endpoints_progress(experiment, len(others))
        return
    from wiseft_explorer.ui import results  # the sweep side: imports torch and loads the models

    runtime = state.load_runtime()
    if runtime is None:
        st.stop()
    with shown_errors("The Explorer cannot show this experiment"):
        results.sweep_job(runtime)  # a cold start: start computing before anything else is drawn
        sidebar.runtime_details(runtime)
        result, complete = results.ensure_sweep(runtime, alpha, notice)
        if result is None:
            st.stop()
        sidebar.results_origin(result.provenance)
        # Other endpoints' sweeps start once this one is complete: the chosen path fills in first.
        others = results.other_endpoints(experiment) if complete else state.other_endpoint_curves(experiment)
        explorer.explorer_body(result.curves(), alpha, results.accuracies_at(runtime, result, alpha), complete,
                               notice, experiment.endpoint, others)
        if complete and len(others) < len(experiment.endpoints) - 1:
            results.endpoints_progress(experiment, len(others))
        if not complete:
            results.sweep_progress(runtime, result.images[0])


# st.navigation names the landing page "Explorer" (with plain pages/ discovery it would be called "app").
st.navigation([
    # Material icons: emoji showed as empty boxes on machines without an emoji font (headless chromium, projectors).
    st.Page(explorer_page, title="Explorer", icon=":material/explore:", default=True),
    st.Page("pages/1_Gallery.py", title="Gallery", icon=":material/photo_library:"),
    st.Page("pages/2_Upload.py", title="Upload", icon=":material/add_photo_alternate:"),
    st.Page("pages/3_Models.py", title="Models", icon=":material/tune:"),
    st.Page("pages/4_Lesson.py", title="Lesson", icon=":material/school:"),
]).run()
