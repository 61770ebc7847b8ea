"""WiSE-FT Explorer: weight-space ensembles of zero-shot and fine-tuned CLIP models, as a library.

The public API is re-exported here (as open_clip does); the Streamlit app and the CLI only use these. The names
load on first use (PEP 562), so that torch-free parts (experiment files, cache keys, stored curves) can be used
without importing torch: the app's warm start draws its curves before torch has loaded.
"""

import os

from ._lazy import lazy_exports

# libgomp's default busy-waiting makes every parallel op wait for a descheduled worker when the CPU is shared
# (the app's server, browser, other sessions): measured 3-8x slower on 2 loaded cores (docs/benchmarks.md).
# Passive waiting costs little on a quiet machine. It must be set before torch loads OpenMP; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {
    "core.checkpoints": ("CheckpointError", "load_checkpoint", "save_checkpoint"),
    "core.paper_pickle": ("convert_trusted_pickle",),
    "results.curves": ("ALPHA_GRID", "PAPER_ALPHA", "Curves", "choose_alphas"),
    "experiment.locations": ("DEFAULT_EXPERIMENT",),
    "experiment.parse": ("load_experiment",),
    "experiment.spec": ("DatasetSpec", "Experiment", "ExperimentError", "ModelSpec"),
    "core.interpolate": ("WeightSpace", "Working", "interpolate_state_dicts"),
    "core.loading": ("load_clip", "load_models"),
    "core.models": ("ImageClassifier", "LoadedClip", "ModelLoadError", "ModelPair", "pick_device"),
    "evaluation.runtime": ("ExperimentRuntime",),
    "evaluation.sweep": ("run_sweep",),
    "evaluation.sweep_result": ("SweepResult",),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)

