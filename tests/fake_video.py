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
