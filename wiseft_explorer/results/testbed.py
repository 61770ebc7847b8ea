"""The ImageNet robustness testbed's published accuracies (Taori et al., NeurIPS 2020) as reference models; torch-free.

The data ship with the package (`assets/testbed/`, MIT licence beside it): top-1 accuracies (%) of 338 models on
ImageNet and its five shifts, each model with the testbed's own type. This module reads them and says which of an
experiment's sets each column stands for; `robustness.py` fits the testbed's lines through them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..experiment.locations import ASSETS_DIR
from ..experiment.spec import Experiment

TESTBED_DIR = ASSETS_DIR / "testbed"
TESTBED_CSV = TESTBED_DIR / "imagenet-testbed.csv"
TESTBED_LICENSE = TESTBED_DIR / "imagenet-testbed.LICENSE"
TESTBED_SOURCE = ("the ImageNet robustness testbed (Taori et al., NeurIPS 2020; modestyachts/imagenet-testbed, "
                  "MIT licence)")
STANDARD = "Standard training"  # the models the testbed fits its lines over
UNTYPED = "other (untyped checkpoints)"  # the testbed's type map lists no type for these rows
ID_COLUMN = "val"  # ImageNet validation
# A preset's column in the testbed, and the column of ImageNet accuracy it is plotted against (the testbed restricts
# ImageNet to the classes R, A and ObjectNet score).
SHIFT_COLUMNS: dict[str, tuple[str, str]] = {
    "imagenet-v2": ("imagenetv2-matched-frequency", ID_COLUMN),
    "imagenet-sketch": ("imagenet-sketch", ID_COLUMN),
    "imagenet-r": ("imagenet-r", "val-on-imagenet-r-classes"),
    "imagenet-a": ("imagenet-a", "val-on-imagenet-a-classes"),
    "objectnet": ("objectnet-1.0-beta", "val-on-objectnet-classes"),
}


@lru_cache(maxsize=4)
def load_testbed(path: Path = TESTBED_CSV) -> pd.DataFrame:
    """The testbed's table: `model`, `type` (untyped rows named UNTYPED) and accuracy columns in % (NaN: unknown).

    Shared and cached: callers must not change the frame they get (copy it first)."""
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as err:
        raise ValueError(f"cannot read the robustness testbed's accuracies at {path}: {err}; reinstall the package "
                         "(the file ships in wiseft_explorer/assets/testbed/)") from err
    frame["type"] = frame["type"].fillna(UNTYPED)
    return frame


@dataclass(frozen=True)
class ShiftAxes:
    """One shift set of an experiment as the testbed plots it: its column, and the ImageNet column for its x-axis."""

    set_name: str  # the experiment's name for the shift set
    preset: str  # its preset key (imagenet-v2, imagenet-r, ...)
    y_column: str
    x_column: str  # `val`, or ImageNet on this shift's classes (R, A, ObjectNet)

    @property
    def restricted(self) -> bool:
        """Whether the testbed plots this shift against ImageNet accuracy on its classes only."""
        return self.x_column != ID_COLUMN


def preset_axes(id_preset: str | None, shifts: Iterable[tuple[str, str | None]]) -> list[ShiftAxes]:
    """The shifts the testbed has a line for, given the ID set's preset and (name, preset) of every shift set.

    Empty unless the ID set is the ImageNet preset: the testbed's models say nothing about other sets (the demo's
    world, CIFAR, image folders)."""
    if id_preset != "imagenet":
        return []
    return [ShiftAxes(name, preset, *SHIFT_COLUMNS[preset]) for name, preset in shifts if preset in SHIFT_COLUMNS]


def experiment_axes(exp: Experiment) -> list[ShiftAxes]:
    """The shifts of an experiment that the testbed has lines for (none unless its ID set is ImageNet's preset)."""
    return preset_axes(exp.id_set.preset, [(spec.name, spec.preset) for spec in exp.shifts])


def no_testbed_reason(id_preset: str | None) -> str:
    """Why an experiment has no testbed overlay or effective robustness (shown where they would be)."""
    return ("Effective robustness and the testbed's models need ImageNet presets: the testbed's 338 published models "
            "were measured on ImageNet and its shifts" + ("" if id_preset == "imagenet" else
            ", and this experiment's ID set is not the ImageNet preset") +
            ". The demo's own family of standard models is not built yet, so the demo shows no line.")
