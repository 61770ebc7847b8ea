"""WiSE-FT Explorer: weight-space ensembles of zero-shot and fine-tuned CLIP models, as a library.

The public API is re-exported here (as open_clip does); the Streamlit app and the CLI only use these.
"""

import os

# libgomp's default busy-waiting makes every parallel op wait for a descheduled worker when the CPU is shared
# (the app's server, browser, other sessions): measured 3-8x slower on 2 loaded cores (docs/benchmarks.md).
# Passive waiting costs little on a quiet machine. It must be set before torch loads OpenMP; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .checkpoints import CheckpointError, convert_trusted_pickle, load_checkpoint, save_checkpoint
from .experiment import (
    DEFAULT_EXPERIMENT,
    DatasetSpec,
    Experiment,
    ExperimentError,
    ModelSpec,
    load_experiment,
)
from .interpolate import WeightSpace, Working, interpolate_state_dicts
from .models import (
    ImageClassifier,
    LoadedClip,
    ModelLoadError,
    ModelPair,
    load_clip,
    load_models,
    pick_device,
)
from .runtime import ExperimentRuntime
from .sweep import ALPHA_GRID, PAPER_ALPHA, SweepResult, choose_alphas, run_sweep

__all__ = [
    "ALPHA_GRID", "DEFAULT_EXPERIMENT", "PAPER_ALPHA", "CheckpointError", "DatasetSpec", "Experiment",
    "ExperimentError", "ExperimentRuntime", "ImageClassifier", "LoadedClip", "ModelLoadError", "ModelPair",
    "ModelSpec", "SweepResult", "WeightSpace", "Working", "choose_alphas", "convert_trusted_pickle",
    "interpolate_state_dicts", "load_checkpoint", "load_clip", "load_experiment", "load_models", "pick_device",
    "run_sweep", "save_checkpoint",
]
