"""What the pages draw: plotly figures, the gallery's filters, the paper's reference points and the lesson.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "gallery": ("FILTERS", "apply_filter", "filter_counts", "gallery_frame", "neighbours"),
    "cards": ("Card", "alpha_position", "metric_cards", "results_table", "robustness_cards", "same_model_note"),
    "robustness_plot": ("LINE_NAME", "TESTBED_GROUP", "Overlay", "plot_table", "reference_overlay"),
    "lesson": ("LessonStep", "broken_caption", "lesson_steps", "step_index", "step_note", "with_article",
               "worst_shift"),
    "plots": ("CURRENT",),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
