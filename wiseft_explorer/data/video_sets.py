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

YouTube-BB-Robust (`ytbb-robust/`, the paper's `ytbb_robust.py`): images `ytbb_videos/<ytid>_<ms>/frame-<n>.jpg`;
anchors, their classes and pm-10 frames from the annotation files the paper's code reads (`read_ytbb`); its 24
class names and their ImageNet classes are the paper's `ytbb_class_index.json` and `rev_class_idx_map.json`,
shipped in `assets/ytbb_robust/` with their MIT licence.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..experiment.presets import PresetError, PresetImages

IMAGENET_CLASSES = 1000
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
               groups: list[tuple[int, ...]], names: list[str], never: frozenset[int] = frozenset()) -> PresetImages:
    """The anchors and their frames as a preset set: images (anchors first, in key order), each one's label (its
    first class's representative), the classes right for it, and each anchor's frames as set indices.

    A class without ImageNet classes (YouTube-BB-Robust's cow, giraffe, skateboard, toilet, none) is represented
    by an ImageNet class of no group, named as the class; its logit is 0, as the paper's `project_logits` leaves
    it, except for the classes in `never` (the paper subtracts 1e10 from 'none'), which are not scored at all."""
    keys = sorted(anchors)
    keys += sorted({f for a in keys for f in anchors[a]} - set(keys))
    position = {k: i for i, k in enumerate(keys)}
    unlabelled = next((k for k in keys if not frame_labels.get(k)), None)
    if unlabelled is not None:
        raise PresetError(key, folder, f"the frame {unlabelled} has no label in the metadata")
    absent = next((k for k in keys if not (folder / k).is_file()), None)
    if absent is not None:
        raise PresetError(key, folder, f"{folder / absent} is listed in the metadata but missing")
    spare = iter(sorted(set(range(IMAGENET_CLASSES)) - {i for g in groups for i in g}))
    representative = [min(g) if g else next(spare) for g in groups]
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
    scored = [c for c in range(len(groups)) if c not in never]
    return PresetImages(right[:, 0].copy(), [str(folder / k) for k in keys], groups=tuple(groups[c] for c in scored),
                        class_indices=[representative[c] for c in scored],
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


YTBB_FILES = ("anchor_labels.json", "pmk_labels.json", "ytbb_robustness_test_anchors_full.csv")
PM_K = 10
YTBB_NONE = 22  # the class 'none': the paper's code takes 1e10 off its logit, so it is never predicted
# A pm-k frame counts when its annotators marked it 'similar' and none of these (the paper's load_pmk_annotations).
PROBLEMATIC = frozenset({"dissimilar", "problematic", "incorrect", "dont know", "deformation", "background-change",
                         "occlusion-increased", "blur-increase", "bad-anchor"})


def _frame_key(path: str) -> str:
    """'<video>_<ms>/frame-<n>.jpg': a frame's last two path parts, as the paper keys frames."""
    return "/".join(path.replace("\\", "/").split("/")[-2:])


def _annotations(key: str, folder: Path, name: str) -> dict[str, set[str]]:
    """An annotation file's rows: raw key -> its label names (a key annotated twice keeps its last row)."""
    data = _json(key, folder, name)
    try:
        return {str(row["key"]): {data["labels"][i] for i in row["labels"]} for row in data["annotations"]}
    except (KeyError, IndexError, TypeError) as err:
        raise PresetError(key, folder, f"{name} is not an annotation file ({type(err).__name__}: {err})") from err


def _initial_labels(key: str, folder: Path) -> dict[str, int]:
    """YouTube-BB's label of each anchor ('<ytid>_<time_ms>'); the CSV's 22 and 23 are swapped, as the paper does."""
    import csv

    name = YTBB_FILES[2]
    try:
        with open(folder / name, newline="", encoding="utf-8") as f:
            rows = [(f"{r['ytid']}_{r['time_ms']}", int(r["label"])) for r in csv.DictReader(f)]
    except (OSError, KeyError, ValueError) as err:
        raise PresetError(key, folder, f"cannot read {name}: {type(err).__name__}: {err}") from err
    return {anchor: {22: 23, 23: 22}.get(label, label) for anchor, label in rows}


def ytbb_classes() -> tuple[list[str], list[tuple[int, ...]]]:
    """YouTube-BB-Robust's 24 class names and each one's ImageNet classes (the paper's maps, shipped as data)."""
    assets = Path(__file__).resolve().parent.parent / "assets" / "ytbb_robust"
    names = json.loads((assets / "ytbb_class_index.json").read_text(encoding="utf-8"))
    to_imagenet = json.loads((assets / "rev_class_idx_map.json").read_text(encoding="utf-8"))
    return ([names[str(c)] for c in range(len(names))],
            [tuple(sorted(to_imagenet.get(str(c), []))) for c in range(len(names))])


def read_ytbb(source: Path, key: str = "ytbb-robust") -> PresetImages:
    """YouTube-BB-Robust's reviewed anchors and pm-10 frames (the paper's reviewed=True), in its 24 classes.

    Anchors: rows of anchor_labels.json marked 'good' and neither 'bad' nor 'unsure', less those a pm-k row marks
    'bad-anchor'; their classes: the annotated class names plus YouTube-BB's own label. Frames: offsets -10..10 of
    an anchor whose '<anchor>,<frame>' row is 'similar' and not problematic; a frame is right when its prediction
    is among its anchor's classes. Images: ytbb_videos/<video>_<ms>/frame-<n>.jpg."""
    root = _release_folder(key, source, "ytbb-robust", "ytbb_videos")
    meta = root / "metadata" if (root / "metadata").is_dir() else root
    absent = [name for name in YTBB_FILES if not (meta / name).is_file()]
    if absent:
        raise PresetError(key, root, f"no {absent[0]} (in metadata/ or beside ytbb_videos/)")
    names, groups = ytbb_classes()
    index = {name: c for c, name in enumerate(names)}
    initial = _initial_labels(key, meta)
    pmk_rows = _annotations(key, meta, YTBB_FILES[1])
    bad = {_frame_key(k.split(",")[0]) for k, labels in pmk_rows.items() if "bad-anchor" in labels}
    similar = {k for k, labels in pmk_rows.items() if "similar" in labels and not labels & PROBLEMATIC}
    anchor_rows = {_frame_key(k): labels for k, labels in _annotations(key, meta, YTBB_FILES[0]).items()}
    good = sorted(a for a, labels in anchor_rows.items()
                  if "good" in labels and not labels & {"bad", "unsure"} and a not in bad)
    anchors, frame_labels = {}, {}
    for a in good:
        video, name = a.split("/")
        if video not in initial:
            raise PresetError(key, meta, f"the anchor {a} has no row in {YTBB_FILES[2]}")
        classes = sorted({index[n] for n in anchor_rows[a] if n in index} | {initial[video]},
                         key=lambda c: (not groups[c], c))  # a class with ImageNet classes first: the label
        try:
            at = int(name.split("-")[1].split(".")[0])
        except (IndexError, ValueError) as err:
            raise PresetError(key, meta, f"the anchor {a} is not named <video>_<ms>/frame-<n>.jpg") from err
        anchors[a] = [f for f in (f"{video}/frame-{at + i}.jpg" for i in range(-PM_K, PM_K + 1) if i)
                      if f"{a},{f}" in similar]
        frame_labels.update(dict.fromkeys([a, *anchors[a]], classes))
    if not anchors:
        raise PresetError(key, meta, f"{YTBB_FILES[0]} has no reviewed ('good') anchor")
    return pmk_images(key, root / "ytbb_videos", frame_labels, anchors, groups, names, frozenset({YTBB_NONE}))
