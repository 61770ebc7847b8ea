"""Reference models for effective robustness, and which of an experiment's sets each of their columns is; torch-free.

Two sources, one shape (a table of models, their types and accuracies in %): the ImageNet robustness testbed's
published accuracies (Taori et al., NeurIPS 2020; `assets/testbed/`, MIT licence beside it: 338 models on ImageNet
and its five shifts, each with the testbed's own type) for experiments on ImageNet presets, and the demo's own
family of standard classifiers (`family.json` beside the demo's zero-shot checkpoint, results/demo_family.py) for
experiments on the world's sets. `robustness.py` fits the lines through either.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..experiment.locations import ASSETS_DIR
from ..experiment.spec import DatasetSpec, Experiment
from ..world.sets import SPECS
from .demo_family import FAMILY_FILE, FAMILY_SOURCE, FAMILY_TYPE, family_frame, file_stamp

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
class ReferenceSource:
    """Where an experiment's reference models come from: the testbed's CSV or the demo family's JSON (hashable, so
    lines fitted over it are cached; `stamp` is the file's mtime, so a rebuilt file is read again)."""

    kind: str  # "testbed" or "family"
    path: Path
    id_column: str  # the column of ID accuracy
    standard: str  # the type the lines are fitted over
    counts: tuple[tuple[str, int], ...] = ()  # family: (world set, image count) the experiment evaluates
    stamp: int = 0

    def frame(self) -> pd.DataFrame:
        """`model`, `type` and accuracy columns in % (shared: copy before changing it)."""
        return load_testbed(self.path) if self.kind == "testbed" else family_frame(self.path, self.counts)

    @property
    def is_testbed(self) -> bool:
        """Whether these are the ImageNet testbed's published models."""
        return self.kind == "testbed"

    @property
    def description(self) -> str:
        """Where the models come from, in words."""
        return TESTBED_SOURCE if self.is_testbed else FAMILY_SOURCE


TESTBED = ReferenceSource("testbed", TESTBED_CSV, ID_COLUMN, STANDARD)


@dataclass(frozen=True)
class ShiftAxes:
    """One shift set of an experiment as its reference models are plotted: its column, and the ID column for its
    x-axis, in the reference table of `source`."""

    set_name: str  # the experiment's name for the shift set
    preset: str  # its preset key (imagenet-v2, imagenet-r, ...) or world source (world:sketch, ...)
    y_column: str
    x_column: str  # `val`, or ImageNet on this shift's classes (R, A, ObjectNet); the family: the ID world set
    source: ReferenceSource = TESTBED

    @property
    def restricted(self) -> bool:
        """Whether the testbed plots this shift against ImageNet accuracy on its classes only."""
        return self.x_column != self.source.id_column


def preset_axes(id_preset: str | None, shifts: Iterable[tuple[str, str | None]]) -> list[ShiftAxes]:
    """The shifts the testbed has a line for, given the ID set's preset and (name, preset) of every shift set.

    Empty unless the ID set is the ImageNet preset: the testbed's models say nothing about other sets (the demo's
    world, CIFAR, image folders)."""
    if id_preset != "imagenet":
        return []
    return [ShiftAxes(name, preset, *SHIFT_COLUMNS[preset]) for name, preset in shifts if preset in SHIFT_COLUMNS]


def family_path(exp: Experiment) -> Path | None:
    """The demo family's JSON for an experiment on world sets: `family.json` beside its zero-shot checkpoint (None
    for other experiments)."""
    if not exp.id_set.is_world or not exp.zeroshot.pretrained or exp.zeroshot.pretrained.startswith(
            ("hf-hub:", "local-dir:", "transformers:")):
        return None
    return Path(exp.zeroshot.pretrained).parent / FAMILY_FILE


def _world_count(spec: DatasetSpec) -> tuple[str, int]:
    """A world set's name and image count (without `limit`: the set's default size)."""
    name = spec.source.removeprefix("world:")
    return name, spec.limit or SPECS[name].size


def family_axes(exp: Experiment, path: Path) -> list[ShiftAxes]:
    """The world shifts of an experiment against its ID set, in the demo family's table at `path`."""
    shifts = [spec for spec in exp.shifts if spec.is_world]
    counts = tuple(_world_count(spec) for spec in (exp.id_set, *shifts))
    source = ReferenceSource("family", path, counts[0][0], FAMILY_TYPE, counts, file_stamp(path))
    return [ShiftAxes(spec.name, spec.source, name, counts[0][0], source)
            for spec, (name, _) in zip(shifts, counts[1:], strict=True)]


def experiment_axes(exp: Experiment) -> list[ShiftAxes]:
    """The shifts of an experiment that reference models have lines for: the testbed's when its ID set is ImageNet's
    preset, the demo family's when its sets are the world's and the family's file exists; else none."""
    path = family_path(exp)
    if path is not None:
        return family_axes(exp, path) if path.is_file() else []
    return preset_axes(exp.id_set.preset, [(spec.name, spec.preset) for spec in exp.shifts])


def no_testbed_reason(id_preset: str | None) -> str:
    """Why an experiment has no reference overlay or effective robustness (shown where they would be)."""
    return ("Effective robustness and the testbed's models need ImageNet presets: the testbed's 338 published models "
            "were measured on ImageNet and its shifts" + ("" if id_preset == "imagenet" else
            ", and this experiment's ID set is not the ImageNet preset") +
            ". On the demo's world sets the line comes from the demo's family of standard classifiers instead: "
            "`build-demo` writes it as family.json beside the zero-shot checkpoint.")
