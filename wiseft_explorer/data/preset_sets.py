"""Preset sets before they become eval sets: a preset's folder read into labels and file locations, its classes
matched to the experiment's, and what happens to the files it cannot read."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..experiment.presets import PresetImages, preset_of
from ..experiment.spec import DatasetSpec, ExperimentError
from .folders import loose_name


class DataWarning(UserWarning):
    """Something in a dataset was skipped (an unreadable file); the set is still usable."""


def report_skipped(spec: DatasetSpec, skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Warn about the files a set left out; a preset set without `skip_unreadable` refuses them instead."""
    if skipped and spec.preset and not spec.skip_unreadable:
        raise ExperimentError(unreadable_message(spec.name, *skipped[0], len(skipped)))
    if skipped:
        warnings.warn(f"{spec.name}: skipped {len(skipped)} unreadable file(s), e.g. {skipped[0][0]}: "
                      f"{skipped[0][1]}", DataWarning, stacklevel=3)
    return skipped


def unreadable_message(name: str, path: str, reason: str, count: int = 1) -> str:
    """A preset set's unreadable file, named, and the two ways on (the benchmark's loader would fail on it too)."""
    return (f"{name}: cannot read {path}: {reason} ({count} such file(s)); the benchmark's loader would fail on "
            "it too: fix or remove the file, or add skip_unreadable = true to the set to leave such files out "
            "(counted and shown)")


BY_POSITION = ("imagenet", "iwildcam")  # class lists matched by index, not by name


def preset_classes(key: str, classnames: Sequence[str]) -> np.ndarray:
    """Where each class of a preset's class list is among the experiment's classes (ImageNet: by index order)."""
    from ..experiment.labelsets import class_list

    preset = preset_of(key)
    expected = class_list(preset.classes)
    if preset.classes in BY_POSITION:  # an experiment may word these classes its own way (iWildCam repeats names)
        if len(classnames) != len(expected):
            which = "ImageNet's 1,000" if preset.classes == "imagenet" else f"{preset.classes}'s {len(expected)}"
            raise ExperimentError(f"preset {key!r} labels images by {which} class indices, but the experiment has"
                                  f" {len(classnames)} classes; use [classes] names = "
                                  f"\"{preset.classes}\"")
        return np.arange(len(expected))
    loose = [loose_name(c) for c in classnames]  # the same loose match as class folders get
    missing = [c for c in expected if loose_name(c) not in loose]
    if missing:
        raise ExperimentError(f"preset {key!r} needs the class {missing[0]!r} among the experiment's classes; use "
                              f"[classes] names = \"{preset.classes}\"")
    return np.array([loose.index(loose_name(c)) for c in expected])


def read_preset(key: str, source: Path) -> PresetImages:
    """Read a preset's labels and image locations from its folder (the layout is checked, nothing is decoded)."""
    from . import cifar, imagenet_sets, transfer_sets, video_sets, wilds_sets

    readers: dict[str, Callable[[Path], PresetImages]] = {
        "objectnet": imagenet_sets.read_objectnet, "cifar10.1": cifar.read_cifar101, "cifar10.2": cifar.read_cifar102,
        "imagenet-vid-robust": video_sets.read_imagenet_vid,
        "ytbb-robust": video_sets.read_ytbb, **wilds_sets.READERS}
    by_split: dict[str, Callable[[Path, str], PresetImages]] = {  # test split, or the training split (`-train`)
        "cifar10": cifar.read_cifar10, "cifar100": cifar.read_cifar100, "dtd": transfer_sets.read_dtd,
        "stanford-cars": transfer_sets.read_stanford_cars, "sun397": transfer_sets.read_sun397,
        "food101": transfer_sets.read_food101}
    dataset = key.removesuffix("-train")
    if dataset in by_split:
        return by_split[dataset](source, key)
    reader = readers.get(key)
    return reader(source) if reader else imagenet_sets.read_class_folders(key, source)
