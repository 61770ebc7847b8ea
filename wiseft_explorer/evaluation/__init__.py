"""Evaluating theta_alpha: the streaming sweep engine, the alpha sweep and its background jobs, the loaded
experiment runtime and its registry, torchrun sweeps, per-image predictions and exports.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "batching": ("POOL_MIN_IMAGES", "cpu_workers", "predict_logits", "worker_pool"),
    "distributed_sweep": ("run_sweep_distributed",),
    "engine": ("StreamJob", "StreamProgress", "stream_evaluate"),
    "features": ("FeatureJob", "feature_job", "stored_features"),
    "export": ("export_bytes", "export_interpolated", "head_path"),
    "jobs": ("FinishedJob", "JobStatus", "SweepJob", "SweepJobs", "sweep_key"),
    "predict": (
        "ImageAnalysis", "TopK", "analyse_files", "analyse_images", "curve_frame", "drawing_picture",
        "example_indices", "image_probabilities", "predict_three", "preprocess", "probabilities_over_grid",
        "probability_along_alpha", "set_example"
    ),
    "registry": ("RuntimeRegistry", "default_budget"),
    "result_files": ("ResultsError", "import_results", "sweep_predictions", "write_results"),
    "runtime": ("ExperimentRuntime", "WORKING_POOL"),
    "stream_state": ("StateStore",),
    "sweep": ("cached_sweep", "entry_key", "evaluate_at", "plan_sweep", "run_sweep", "state_store"),
    "sweep_result": ("Predictions", "SweepResult", "summarise"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
