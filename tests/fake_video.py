"""A tiny fake copy of the ImageNet-Vid-Robust release: its misc/ and metadata/ JSON files and a few frames."""

from __future__ import annotations

import json
from pathlib import Path

from fake_datasets import png_bytes

# Three video classes over ImageNet's indices 3 and 7, 5, and 10-12 (wnids n<index>); vid wnids v0..v2.
VID_GROUPS = {0: (3, 7), 1: (5,), 2: (10, 11, 12)}
VID_NAMES = ("airplane", "bear", "bird")
# Each frame's classes (the first is its label); anchors and their neighbour frames.
VID_LABELS = {"val/a/000010.JPEG": [0], "val/a/000009.JPEG": [0], "val/a/000011.JPEG": [0, 2],
              "val/b/000005.JPEG": [1], "val/b/000006.JPEG": [1], "val/c/000001.JPEG": [2],
              "val/d/000001.JPEG": [2]}  # d is not in any pm-set: not part of the set
VID_PMSETS = {"val/a/000010.JPEG": ["val/a/000009.JPEG", "val/a/000011.JPEG"],
              "val/b/000005.JPEG": ["val/b/000006.JPEG"], "val/c/000001.JPEG": []}


def fake_imagenet_vid(root: Path) -> Path:
    folder = root / "imagenet_vid_ytbb_robust" / "imagenet-vid-robust"
    for sub in ("misc", "metadata"):
        (folder / sub).mkdir(parents=True)
    wnid = {i: f"n{i:08d}" for i in range(1000)}
    files = {"misc/imagenet_class_index.json": {str(i): [w, f"class {i}"] for i, w in wnid.items()},
             "misc/imagenet_vid_class_index.json": {str(c): [f"v{c}", name] for c, name in enumerate(VID_NAMES)},
             "misc/rev_wnid_map.json": {f"v{c}": [wnid[i] for i in g] for c, g in VID_GROUPS.items()},
             "misc/wnid_map.json": {wnid[i]: f"v{c}" for c, g in VID_GROUPS.items() for i in g},
             "metadata/labels.json": VID_LABELS, "metadata/pmsets.json": VID_PMSETS}
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content))
    for i, key in enumerate(VID_LABELS):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(png_bytes(colour=(30 * i, 90, 40)))
    return folder


# YouTube-BB-Robust: anchors (their annotated label names), YouTube-BB's label of each video, and pm-k rows.
YTBB_ANCHORS = {"export/vidA_1000/frame-30.jpg": ["good"], "vidB_2000/frame-60.jpg": ["good", "dog"],
                "vidC_500/frame-15.jpg": ["good", "unsure"], "vidD_700/frame-21.jpg": ["good"],
                "vidE_900/frame-27.jpg": ["good"]}
YTBB_CSV = {"vidA_1000": 1, "vidB_2000": 22, "vidC_500": 0, "vidD_700": 0, "vidE_900": 6}  # 22 means car (23)
YTBB_PMK = {"vidA_1000/frame-30.jpg,vidA_1000/frame-29.jpg": ["similar"],
            "vidA_1000/frame-30.jpg,vidA_1000/frame-31.jpg": ["similar", "correct"],
            "vidA_1000/frame-30.jpg,vidA_1000/frame-35.jpg": ["similar", "blur-increase"],  # problematic
            "vidA_1000/frame-30.jpg,vidA_1000/frame-41.jpg": ["similar"],  # offset 11: beyond pm-10
            "vidB_2000/frame-60.jpg,vidB_2000/frame-61.jpg": ["similar"],
            "vidB_2000/frame-60.jpg,vidB_2000/frame-59.jpg": ["dissimilar"],
            "vidD_700/frame-21.jpg,vidD_700/frame-22.jpg": ["similar", "bad-anchor"]}
# What the paper's reviewed pm-10 keeps: anchors (their classes) and their frames.
YTBB_EXPECTED = {"vidA_1000/frame-30.jpg": ({1}, ["vidA_1000/frame-29.jpg", "vidA_1000/frame-31.jpg"]),
                 "vidB_2000/frame-60.jpg": ({19, 23}, ["vidB_2000/frame-61.jpg"]),
                 "vidE_900/frame-27.jpg": ({6}, [])}


def fake_ytbb(root: Path) -> Path:
    folder = root / "imagenet_vid_ytbb_robust" / "ytbb-robust"
    (folder / "metadata").mkdir(parents=True)
    names = ["good", "unsure", "bad", "dog", "similar", "dissimilar", "correct", "blur-increase", "bad-anchor"]
    for name, rows in (("anchor_labels.json", YTBB_ANCHORS), ("pmk_labels.json", YTBB_PMK)):
        annotations = [{"key": k, "notes": "", "labels": [names.index(n) for n in v]} for k, v in rows.items()]
        (folder / "metadata" / name).write_text(json.dumps({"labels": names, "annotations": annotations}))
    lines = ["ytid,time_ms,label", *(f"{v.rsplit('_', 1)[0]},{v.rsplit('_', 1)[1]},{c}" for v, c in YTBB_CSV.items())]
    (folder / "metadata" / "ytbb_robustness_test_anchors_full.csv").write_text("\n".join(lines) + "\n")
    frames = {"/".join(k.split("/")[-2:]) for k in [*YTBB_ANCHORS, *(f for k in YTBB_PMK for f in k.split(","))]}
    for i, key in enumerate(sorted(frames)):
        (folder / "ytbb_videos" / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / "ytbb_videos" / key).write_bytes(png_bytes(colour=(20 * i, 40, 90)))
    return folder
