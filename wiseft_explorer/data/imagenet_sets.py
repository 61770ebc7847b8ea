"""Readers for ImageNet and its shifts (V2, Sketch, R, A, ObjectNet): folder layouts checked, labels by class index.

Labels index ImageNet's standard class order (sorted WordNet ids), which is the order of timm's `ImageNetInfo` and of
open_clip's `IMAGENET_CLASSNAMES`; the R and A subsets come from timm's metadata, ObjectNet's mapping from the
dataset's own `mappings/` folder.
"""

from __future__ import annotations

import json
import pkgutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..experiment.presets import PRESETS, PresetError, PresetImages, objectnet_folders
from .folders import ImageFolderError, scan_image_folder

SHOWN = 3  # folder names quoted in a layout error
OBJECTNET_MAPPINGS = ("objectnet_to_imagenet_1k.json", "folder_to_objectnet_label.json",
                      "pytorch_to_imagenet_2012_id.json", "imagenet_to_label_2012_v2")
OBJECTNET_BORDER = 2  # ObjectNet images carry a 1-pixel red frame; the paper's code cuts 2 pixels from each side


@lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-1k's 1,000 WordNet ids in the standard class-index order (timm's ImageNetInfo)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo("imagenet-1k").label_names())


@lru_cache(maxsize=2)
def subset_wnids(key: str) -> tuple[str, ...]:
    """The 200 WordNet ids of ImageNet-R ('imagenet-r') or ImageNet-A ('imagenet-a'), as timm ships them."""
    name = {"imagenet-r": "imagenet_r_synsets.txt", "imagenet-a": "imagenet_a_synsets.txt"}[key]
    data = pkgutil.get_data("timm.data", f"_info/{name}")
    if data is None:  # a loader without get_data (a missing file raises instead)
        raise FileNotFoundError(f"cannot read timm.data/_info/{name}: timm's loader does not give package data")
    return tuple(line.strip() for line in data.decode("utf-8").splitlines() if line.strip())


def _quote(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


# ImageNet's validation images come flat; the devkit says which class each one is.
IMAGENET_VAL_SORT = (": the devkit's data/ILSVRC2012_validation_ground_truth.txt gives each image's class, and "
                     "torchvision sorts them from the two archives (ILSVRC2012_img_val.tar and "
                     "ILSVRC2012_devkit_t12.tar.gz in DIR): `python -c \"from torchvision.datasets import ImageNet; "
                     "ImageNet('DIR', split='val')\"` writes DIR/val/<wnid>/, the folder to use")


def _class_folders(key: str, root: Path) -> list[str]:
    """The visible sub-folders of a preset's root; a missing root or a flat folder of images is an error."""
    if not root.is_dir():
        raise PresetError(key, root, "folder not found; fix `source`")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = sum(1 for p in root.iterdir() if p.is_file())
        how = IMAGENET_VAL_SORT if key == "imagenet" else ""
        raise PresetError(key, root, f"no class folders (found {loose} files directly inside); sort the images "
                                     f"into one folder per class first{how}")
    return folders


def _scan(key: str, root: Path, folder_index: dict[str, int]) -> PresetImages:
    try:
        scan = scan_image_folder(root, None, folder_index=folder_index)
    except ImageFolderError as err:
        raise PresetError(key, root, str(err).removeprefix(f"{root}: ").split("; ")[0]) from err
    if not scan.samples:
        raise PresetError(key, root, "no readable images")
    return PresetImages(labels=np.array([label for _, label in scan.samples], dtype=np.int64),
                        paths=[str(path) for path, _ in scan.samples],
                        skipped=[(str(path), why) for path, why in scan.skipped])


def read_class_folders(key: str, root: Path) -> PresetImages:
    """ImageNet, V2, Sketch, R or A: one folder per class, named by WordNet id (V2: by class index)."""
    wnids = imagenet_wnids()
    if key == "imagenet-v2":
        folder_index = {str(i): i for i in range(len(wnids))}
    else:
        index = {wnid: i for i, wnid in enumerate(wnids)}
        expected = subset_wnids(key) if key in ("imagenet-r", "imagenet-a") else wnids
        folder_index = {wnid: index[wnid] for wnid in expected}
    folders = _class_folders(key, root)
    unexpected = [f for f in folders if f not in folder_index]
    if unexpected:
        hint = " (is `source` one level too high?)" if set(unexpected) & {"train", "val", "test", "images"} else ""
        raise PresetError(key, root, f"folder(s) {_quote(unexpected)} are not {PRESETS[key].title} class "
                                     f"folders{hint}")
    missing = sorted(set(folder_index) - set(folders), key=lambda f: folder_index[f])
    if missing:
        raise PresetError(key, root, f"{len(missing)} of the {len(folder_index)} class folders are missing, "
                                     f"e.g. {_quote(missing)}")
    found = _scan(key, root, folder_index)
    if key in ("imagenet-r", "imagenet-a"):  # the paper scores these among their own 200 classes only
        found.class_indices = sorted(folder_index.values())
    return found


def _mapping_file(root: Path, name: str) -> str:
    try:
        return (root / name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PresetError("objectnet", root.parent, f"cannot read mappings/{name}: {err}") from err


def objectnet_groups(mappings: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """ObjectNet folder -> (its label, the ImageNet class indices it covers), for the 113 overlapping classes."""
    try:
        to_imagenet = json.loads(_mapping_file(mappings, OBJECTNET_MAPPINGS[0]))
        folder_label = json.loads(_mapping_file(mappings, OBJECTNET_MAPPINGS[1]))
        # pytorch index -> ImageNet 2012 id; line k of imagenet_to_label_2012_v2 names the class with 2012 id k
        pytorch_to_2012 = json.loads(_mapping_file(mappings, OBJECTNET_MAPPINGS[2]))
        label_lines = [line.strip() for line in _mapping_file(mappings, OBJECTNET_MAPPINGS[3]).splitlines()]
        by_name = {label_lines[int(id2012)]: int(index) for index, id2012 in pytorch_to_2012.items()}
        label_folder = {label: folder for folder, label in folder_label.items()}
        return {label_folder[label]: (label, tuple(by_name[name] for name in names.split("; ")))
                for label, names in to_imagenet.items()}
    except (json.JSONDecodeError, KeyError, ValueError, IndexError, AttributeError, TypeError) as err:
        raise PresetError("objectnet", mappings.parent, f"the files in mappings/ do not fit together "
                                                        f"({type(err).__name__}: {err})") from err


def read_objectnet(root: Path) -> PresetImages:
    """ObjectNet's 113 ImageNet-overlapping classes: images of the other classes are not part of the set."""
    images, mappings = objectnet_folders(root)  # `source` may also point at objectnet-1.0/images itself
    if not mappings.is_dir():
        raise PresetError("objectnet", root, "no mappings/ folder next to images/ (it ships inside objectnet-1.0)")
    absent = [name for name in OBJECTNET_MAPPINGS if not (mappings / name).is_file()]
    if absent:
        raise PresetError("objectnet", root, f"mappings/ lacks {_quote(absent)}")
    named = objectnet_groups(mappings)
    groups = {folder: indices for folder, (_, indices) in named.items()}
    folders = set(_class_folders("objectnet", images))
    missing = sorted(set(groups) - folders)
    if missing:
        raise PresetError("objectnet", root, f"{len(missing)} of the {len(groups)} ImageNet-overlapping class "
                                             f"folders are missing from images/, e.g. {_quote(missing)}")
    # Each ObjectNet class is labelled by one ImageNet class of its group (a distinct one), so predictions and
    # labels stay indices into the experiment's 1,000 classes.
    representative: dict[str, int] = {}
    for folder in sorted(groups):
        free = [c for c in groups[folder] if c not in representative.values()]
        if not free:
            raise PresetError("objectnet", root, f"class folder {folder!r} shares all its ImageNet classes")
        representative[folder] = free[0]
    found = _scan("objectnet", images, representative)
    order = sorted(groups)
    found.groups = tuple(groups[f] for f in order)
    found.class_indices = [representative[f] for f in order]
    found.border = OBJECTNET_BORDER
    found.label_names = {representative[f]: named[f][0] for f in order}
    return found
