"""Checks of an experiment's image folders before it is saved or swept: layout, mappings, and class coverage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..experiment.parse import load_mapping
from ..experiment.spec import DatasetSpec, Experiment, ExperimentError
from .folders import ImageFolderError, scan_image_folder


@dataclass
class SetCheck:
    """What scanning one folder set found: an error that makes it unusable, or its images and classes."""

    name: str
    error: str | None = None
    images: int = 0
    skipped: int = 0
    covered: list[str] = field(default_factory=list)  # class names the folder has images of
    needs_subset: bool = False  # covers fewer classes than the experiment, and no `classes` subset is given

    def summary(self, total_classes: int) -> str:
        """One line for the page: what was found, or what is wrong."""
        if self.error:
            return f"{self.name}: {self.error}"
        text = f"{self.name}: {self.images:,} images of {len(self.covered)} of {total_classes} classes"
        return text + (f" ({self.skipped} unreadable file(s) skipped)" if self.skipped else "")


def check_preset(spec: DatasetSpec, classnames: tuple[str, ...]) -> SetCheck:
    """Read a preset set's layout and labels (headers only) against the experiment's classes."""
    from ..experiment.presets import PresetError
    from .preset_sets import preset_classes, read_preset, unreadable_message

    check = SetCheck(spec.name)
    try:
        to_exp = preset_classes(spec.preset_key, classnames)
        found = read_preset(spec.preset_key, Path(spec.source))
    except (PresetError, ExperimentError, OSError) as err:
        check.error = str(err).splitlines()[0]
        return check
    check.images, check.skipped = len(found.labels), len(found.skipped)
    if found.skipped and not spec.skip_unreadable:
        check.error = unreadable_message(spec.name, *found.skipped[0], len(found.skipped))
    check.covered = [classnames[int(to_exp[i])] for i in sorted(set(found.labels.tolist()))]
    return check


def check_world(spec: DatasetSpec, classnames: tuple[str, ...]) -> SetCheck:
    """A world set indexed as the sweep indexes it (labels only, nothing rendered): its images and classes."""
    from .sets import load_world_set

    check = SetCheck(spec.name)
    try:
        ev = load_world_set(spec, classnames)
    except ExperimentError as err:
        check.error = str(err).splitlines()[0]
        return check
    check.images = len(ev)
    check.covered = [classnames[i] for i in sorted(set(ev.labels.tolist()))]
    return check


def check_set(spec: DatasetSpec, classnames: tuple[str, ...]) -> SetCheck:
    """Scan one folder set's headers against the class names (world sets: counted as the sweep counts them)."""
    if spec.is_world:
        return check_world(spec, classnames)
    check = SetCheck(spec.name)
    if spec.preset:  # a preset scores its own classes (R, A, ObjectNet): never a subset question
        return check_preset(spec, classnames)
    try:
        scan = scan_image_folder(Path(spec.source), list(classnames), load_mapping(spec.mapping))
    except (ImageFolderError, ExperimentError, OSError) as err:
        check.error = str(err).splitlines()[0]
        return check
    check.images, check.skipped = len(scan.samples), len(scan.skipped)
    check.covered = [classnames[i] for i in scan.class_indices]
    if not scan.samples:
        check.error = f"no readable images in {spec.source}"
    # A folder of a few classes scored against all of them: the paper restricts ImageNet-R/A's logits instead.
    check.needs_subset = not spec.classes and 0 < len(check.covered) < len(classnames)
    return check


def check_experiment(exp: Experiment) -> list[SetCheck]:
    """Every set of an experiment checked (scanning headers only; nothing is decoded)."""
    return [check_set(spec, exp.classnames) for spec in exp.eval_sets]
