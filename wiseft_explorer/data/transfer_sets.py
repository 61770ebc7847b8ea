"""Readers for the paper's transfer datasets (Stanford Cars, DTD, SUN397, Food101; CIFAR-100 is in `cifar.py`), each
from the layout its release unpacks to and its official split files.

Each reader gives the class order of torchvision's reader of that dataset (`tests/test_transfer_presets.py` checks
it against torchvision's classes where they run without scipy): Cars, the devkit's `cars_meta.mat` (annotation
classes count from 1); DTD, the sorted class folders named in the split file; SUN397, `ClassName.txt`; Food101, the
sorted keys of `meta/<split>.json`. That order is checked, name by name, against CLIP's published class list the
preset scores (`experiment/clip_prompts.json`), so a label can never name the wrong class. Only file locations and
labels are read here; nothing is decoded and nothing is unpickled.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..experiment.presets import PresetError, PresetImages, preset_of
from .folders import loose_name
from .matlab import MatFileError, read_mat


def split_of(key: str) -> tuple[str, str]:
    """(the dataset's key, 'train' or 'test') of a preset key such as 'dtd-train' or 'dtd'."""
    return (key.removesuffix("-train"), "train") if key.endswith("-train") else (key, "test")


def _dataset_folder(key: str, source: Path, name: str, marker: str) -> Path:
    """The release's folder (`name`), given as `source` itself or its parent; `marker` must be inside it."""
    for folder in (source / name, source):
        if (folder / marker).exists():
            return folder
    if not source.exists():
        raise PresetError(key, source, "folder not found; fix `source`")
    raise PresetError(key, source, f"{marker} not found in it or in {name}/ inside it")


def checked_classes(key: str, source: Path, names: Sequence[str]) -> None:
    """Refuse a dataset whose classes (in its reader's order) are not CLIP's list for the preset, in that order."""
    from ..experiment.labelsets import class_list

    expected = class_list(preset_of(key).classes)
    if len(names) != len(expected):
        raise PresetError(key, source, f"the dataset names {len(names)} classes, not {len(expected)}: another "
                                       "version of it, or a copy with classes left out")
    for index, (name, clip) in enumerate(zip(names, expected, strict=True)):
        if loose_name(name) != loose_name(clip):
            raise PresetError(key, source, f"class {index} is {name!r}, but CLIP's class list has {clip!r} there: "
                                           "another version of the dataset, or edited metadata")


def _listed(key: str, source: Path, paths: list[Path], labels: list[int]) -> PresetImages:
    """The files a split file lists; those not there are set aside as unreadable (skip_unreadable decides)."""
    if not paths:
        raise PresetError(key, source, "the split lists no images")
    missing = [i for i, path in enumerate(paths) if not path.is_file()]
    gone = set(missing)
    return PresetImages(labels=np.array([label for i, label in enumerate(labels) if i not in gone], dtype=np.int64),
                        paths=[str(path) for i, path in enumerate(paths) if i not in gone],
                        skipped=[(str(paths[i]), "listed in the split file but not found") for i in missing])


def _mat(key: str, source: Path, path: Path, variable: str) -> list:
    try:
        value = read_mat(path)[variable]
    except FileNotFoundError as err:
        raise PresetError(key, source, f"{path.name} not found") from err
    except (MatFileError, KeyError, ValueError) as err:
        raise PresetError(key, source, f"cannot read {variable!r} from {path.name}: {err}") from err
    return value if isinstance(value, list) else [value]


def read_stanford_cars(source: Path, key: str = "stanford-cars") -> PresetImages:
    """Stanford Cars in torchvision's layout (stanford_cars/: devkit/cars_meta.mat, devkit/cars_train_annos.mat,
    cars_test_annos_withlabels.mat, cars_train/, cars_test/): 8,144 training or 8,041 test images."""
    base = _dataset_folder(key, source, "stanford_cars", "devkit")
    split = split_of(key)[1]
    annotations = base / ("devkit/cars_train_annos.mat" if split == "train" else "cars_test_annos_withlabels.mat")
    checked_classes(key, source, [str(n) for n in _mat(key, source, base / "devkit" / "cars_meta.mat",
                                                       "class_names")])
    try:
        rows = [(str(a["fname"]), int(np.asarray(a["class"]).reshape(-1)[0]) - 1)
                for a in _mat(key, source, annotations, "annotations")]
    except (KeyError, TypeError, IndexError) as err:
        raise PresetError(key, source, f"{annotations.name} has no 'fname' and 'class' per image (the test split "
                                       "needs cars_test_annos_withlabels.mat, not the devkit's unlabelled "
                                       "cars_test_annos.mat)") from err
    if any(not 0 <= label < 196 for _, label in rows):
        raise PresetError(key, source, f"{annotations.name} has a class outside 1 ... 196")
    folder = base / f"cars_{split}"
    return _listed(key, source, [folder / name for name, _ in rows], [label for _, label in rows])


def read_dtd(source: Path, key: str = "dtd") -> PresetImages:
    """DTD's partition 1 (labels/train1.txt or test1.txt; images/<class>/<file>): 1,880 images per split."""
    base = _dataset_folder(key, source, "dtd", "labels")
    split_file = base / "labels" / f"{split_of(key)[1]}1.txt"
    if not split_file.is_file():
        raise PresetError(key, source, f"labels/{split_file.name} not found")
    entries = [line.strip().split("/") for line in split_file.read_text().splitlines() if line.strip()]
    classes = sorted({cls for cls, *_ in entries})  # torchvision's DTD: the sorted classes the split file names
    checked_classes(key, source, classes)
    return _listed(key, source, [base / "images" / Path(*parts) for parts in entries],
                   [classes.index(parts[0]) for parts in entries])


def sun397_name(line: str) -> str:
    """A ClassName.txt line as a class name: '/a/apartment_building/outdoor' -> 'apartment_building outdoor'."""
    return " ".join(line.strip()[3:].split("/"))


def read_sun397(source: Path, key: str = "sun397") -> PresetImages:
    """SUN397's first official partition (Partitions/Training_01.txt or Testing_01.txt, 50 images per class each),
    with the class order of ClassName.txt (torchvision's SUN397, which reads no partition)."""
    base = _dataset_folder(key, source, "SUN397", "ClassName.txt")
    paths = [line.strip() for line in (base / "ClassName.txt").read_text().splitlines() if line.strip()]
    checked_classes(key, source, [sun397_name(p) for p in paths])
    name = "Training_01.txt" if split_of(key)[1] == "train" else "Testing_01.txt"
    partition = next((p for p in (base / "Partitions" / name, base.parent / "Partitions" / name) if p.is_file()),
                     None)
    if partition is None:
        raise PresetError(key, source, f"Partitions/{name} not found (the partitions come apart from the images, "
                                       "in Partitions.zip: unpack it inside SUN397/)")
    index = {p: i for i, p in enumerate(paths)}
    files = [line.strip() for line in partition.read_text().splitlines() if line.strip()]
    try:
        labels = [index[f.rsplit("/", 1)[0]] for f in files]
    except KeyError as err:
        raise PresetError(key, source, f"{name} names an image of class {err.args[0]!r}, which ClassName.txt "
                                       "does not list") from err
    return _listed(key, source, [base / f.lstrip("/") for f in files], labels)


def read_food101(source: Path, key: str = "food101") -> PresetImages:
    """Food101 (food-101/: images/<class>/<id>.jpg and meta/train.json or test.json): 75,750 or 25,250 images."""
    base = _dataset_folder(key, source, "food-101", "meta")
    split_file = base / "meta" / f"{split_of(key)[1]}.json"
    try:
        table = json.loads(split_file.read_text())
    except FileNotFoundError as err:
        raise PresetError(key, source, f"meta/{split_file.name} not found") from err
    except ValueError as err:
        raise PresetError(key, source, f"meta/{split_file.name} is not JSON: {err}") from err
    classes = sorted(table)  # torchvision's Food101: the sorted keys of the split file
    checked_classes(key, source, classes)
    paths = [base / "images" / f"{rel}.jpg" for cls in table for rel in table[cls]]
    labels = [classes.index(cls) for cls in table for _ in table[cls]]
    return _listed(key, source, paths, labels)
