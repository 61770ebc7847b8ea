"""Sweep results without torch: the accuracy curves along alpha, their on-disk copy, sampling errors, and the
robustness testbed's reference models with effective robustness.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "curves": (
        "ALPHA_GRID", "AVG_ROW", "AlphaChoice", "MIN_DISAGREEING", "CHOICE_LABELS", "Curves", "PAPER_ALPHA", "alpha_choices",
        "choose_alphas", "curves_path", "store_curves", "stored_curves"
    ),
    "demo_family": ("FAMILY_FILE", "FAMILY_TYPE", "family_frame", "load_family"),
    "robustness": (
        "FAMILY_TITLE", "FIT_SCALES", "LineFit", "ReferenceLines", "Robustness", "curve_robustness", "effective_robustness",
        "experiment_robustness", "fit_line", "reference_lines", "robustness_rows", "robustness_table", "standard_line"
    ),
    "testbed": ("STANDARD", "TESTBED_CSV", "TESTBED_LICENSE", "experiment_axes", "load_testbed", "no_testbed_reason",
                "preset_axes"),
    "uncertainty": (
        "accuracy_intervals", "compare_to_ends", "endpoint_errors", "format_comparison", "newcombe_interval",
        "paired_counts", "paired_difference", "wilson_interval"
    ),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
