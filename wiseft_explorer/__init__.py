"""WiSE-FT Explorer: weight-space ensembles of zero-shot and fine-tuned CLIP models, as a library.

The public API is re-exported here (as open_clip does); the Streamlit app and the CLI only use these. The names
load on first use (PEP 562), so that torch-free parts (experiment files, cache keys, stored curves) can be used
without importing torch: the app's warm start draws its curves before torch has loaded.
"""

import importlib
import os

# libgomp's default busy-waiting makes every parallel op wait for a descheduled worker when the CPU is shared
# (the app's server, browser, other sessions): measured 3-8x slower on 2 loaded cores (docs/benchmarks.md).
# Passive waiting costs little on a quiet machine. It must be set before torch loads OpenMP; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_EXPORTS = {
    "checkpoints": ("CheckpointError", "convert_trusted_pickle", "load_checkpoint", "save_checkpoint"),
    "curves": ("ALPHA_GRID", "PAPER_ALPHA", "Curves", "choose_alphas"),
    "experiment": ("DEFAULT_EXPERIMENT", "DatasetSpec", "Experiment", "ExperimentError", "ModelSpec",
                   "load_experiment"),
    "interpolate": ("WeightSpace", "Working", "interpolate_state_dicts"),
    "models": ("ImageClassifier", "LoadedClip", "ModelLoadError", "ModelPair", "load_clip", "load_models",
               "pick_device"),
    "runtime": ("ExperimentRuntime",),
    "sweep": ("SweepResult", "run_sweep"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """Import the module that defines a public name on first access."""
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'wiseft_explorer' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
