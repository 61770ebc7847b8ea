"""The paper's video shifts, ImageNet-Vid-Robust and YouTube-BB-Robust, read from their releases' metadata files.

Both score ImageNet's 1,000 logits in the video set's own classes (30 / 24): a class's logit is the max over the
ImageNet classes mapped to it (the paper's `project_logits`, merge_op 'max'), as ObjectNet's groups here; each
class is labelled by the smallest ImageNet index of its group, so predictions stay ImageNet indices. Their metric
is pm-10: an anchor frame counts only if it and each of its listed neighbour frames is predicted right.

ImageNet-Vid-Robust (`imagenet-vid-robust/` of the release, the paper's `imagenet_vid_robust.py`): the classes are
`misc/imagenet_vid_class_index.json`'s 30 (index -> [wnid, name]), each mapped to ImageNet wnids by
`misc/rev_wnid_map.json`, ImageNet wnids to indices by `misc/imagenet_class_index.json`; `metadata/labels.json`
gives each frame (key `val/<video>/<frame>.JPEG`, relative to the folder) its right classes, the first being its
label; `metadata/pmsets.json` gives each anchor its neighbour frames. A frame is right when its prediction is among
its own labels. The set's images are the anchors and their frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..experiment.presets import PresetError, PresetImages

VID_FILES = ("misc/imagenet_class_index.json", "misc/imagenet_vid_class_index.json", "misc/rev_wnid_map.json",
             "metadata/labels.json", "metadata/pmsets.json")


def _json(key: str, folder: Path, name: str) -> Any:
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise PresetError(key, folder, f"no {name}") from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PresetError(key, folder, f"cannot read {name}: {err}") from err


def _release_folder(key: str, source: Path, name: str, marker: str) -> Path:
    """`source` itself, or its `name/` (source = the unpacked imagenet_vid_ytbb_robust/), holding `marker`."""
    for folder in (source, source / name):
        if (folder / marker).exists():
            return folder
    raise PresetError(key, source, f"no {marker} (neither here nor in {name}/)")


def pmk_images(key: str, folder: Path, frame_labels: dict[str, list[int]], anchors: dict[str, list[str]],
               groups: list[tuple[int, ...]], names: list[str]) -> PresetImages:
    """The anchors and their frames as a preset set: images (anchors first, in key order), each one's label (its
    first class's representative), the classes right for it, and each anchor's frames as set indices."""
    keys = sorted(anchors)
    keys += sorted({f for a in keys for f in anchors[a]} - set(keys))
    position = {k: i for i, k in enumerate(keys)}
    unlabelled = next((k for k in keys if not frame_labels.get(k)), None)
    if unlabelled is not None:
        raise PresetError(key, folder, f"the frame {unlabelled} has no label in the metadata")
    absent = next((k for k in keys if not (folder / k).is_file()), None)
    if absent is not None:
        raise PresetError(key, folder, f"{folder / absent} is listed in the metadata but missing")
    representative = [min(g) for g in groups]
    if len(set(representative)) < len(groups):
        raise PresetError(key, folder, "two classes share their smallest ImageNet class")
    members = {k: [representative[c] for c in frame_labels[k]] for k in keys}  # the label's class first, then
    for k in keys:  # every ImageNet class of the frame's classes (a prediction of any of them names that class)
        members[k] += [i for c in frame_labels[k] for i in groups[c] if i not in members[k]]
    right = np.full((len(keys), max(len(m) for m in members.values())), -1, dtype=np.int64)
    for i, k in enumerate(keys):
        right[i, :len(members[k])] = members[k]
    frames = np.full((len(anchors), 1 + max(len(f) for f in anchors.values())), -1, dtype=np.int64)
    for i, a in enumerate(keys[:len(anchors)]):
        frames[i, :1 + len(anchors[a])] = [i, *(position[f] for f in anchors[a])]
    return PresetImages(right[:, 0].copy(), [str(folder / k) for k in keys], groups=tuple(groups),
                        class_indices=representative,
                        label_names=dict(zip(representative, names, strict=True)), pmk=(frames, right))


def read_imagenet_vid(source: Path, key: str = "imagenet-vid-robust") -> PresetImages:
    """ImageNet-Vid-Robust's anchors and pm-10 frames, labelled and grouped into its 30 classes."""
    folder = _release_folder(key, source, "imagenet-vid-robust", "metadata")
    absent = [name for name in VID_FILES if not (folder / name).is_file()]
    if absent:
        raise PresetError(key, folder, f"no {absent[0]}")
    imagenet, vid, rev, labels, pmsets = (_json(key, folder, name) for name in VID_FILES)
    try:
        by_wnid = {wnid: int(index) for index, (wnid, _) in imagenet.items()}
        groups = [tuple(sorted(by_wnid[w] for w in rev[vid[str(c)][0]])) for c in range(len(vid))]
        frame_labels = {k: [int(c) for c in v] for k, v in labels.items()}
        anchors = {a: [str(f) for f in frames] for a, frames in pmsets.items()}
        names = [str(vid[str(c)][1]) for c in range(len(vid))]
    except (KeyError, ValueError, TypeError, AttributeError) as err:
        raise PresetError(key, folder, f"the metadata files do not fit together ({type(err).__name__}: "
                                       f"{err})") from err
    if not anchors:
        raise PresetError(key, folder, "metadata/pmsets.json lists no anchor")
    return pmk_images(key, folder, frame_labels, anchors, groups, names)
