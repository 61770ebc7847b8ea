"""Tiny fake copies of the paper's datasets in their real layouts (real folder names, a few small images each)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from wiseft_explorer.data import imagenet_wnids, subset_wnids


def png_bytes(size: int = 8, colour: tuple[int, int, int] = (90, 120, 200)) -> bytes:
    """One small PNG, written many times (encoding thousands of images would slow the tests down)."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_class_folders(root: Path, folders: list[str], per_class: int = 1, suffix: str = ".JPEG") -> Path:
    """root/<folder>/<i><suffix> for every folder (PNG bytes: decoding goes by content, not by name)."""
    data = png_bytes()
    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / folder / f"{i}{suffix}").write_bytes(data)
    return root


def fake_imagenet_layout(root: Path, key: str, per_class: int = 1) -> Path:
    """The folder layout a preset expects: wnid folders (ImageNet, Sketch, R, A) or index folders (V2)."""
    if key == "imagenet-v2":
        return write_class_folders(root, [str(i) for i in range(1000)], per_class, ".jpeg")
    wnids = subset_wnids(key) if key in ("imagenet-r", "imagenet-a") else imagenet_wnids()
    return write_class_folders(root, list(wnids), per_class)


# A fake ObjectNet: 2012 ids are a permutation of the PyTorch indices, so a reader that mixes them up fails.
def id2012(index: int) -> int:
    """The fake 2012 id of PyTorch class `index`."""
    return (index * 7 + 3) % 1000


OBJECTNET_CLASSES = {  # folder -> (ObjectNet label, PyTorch indices of its ImageNet classes)
    "alarm_clock": ("Alarm clock", (409, 530)),
    "banana": ("Banana", (954,)),
    "chair": ("Chair", (423, 559, 765)),
}
OBJECTNET_UNMAPPED = "air_freshener"  # an ObjectNet class with no ImageNet counterpart


def red_framed_png(seed: int, size: int = 12) -> bytes:
    """A random image (channels 0 ... 200) with a 1-pixel red frame, like every ObjectNet image."""
    arr = np.random.default_rng(seed).integers(0, 201, (size, size, 3), dtype=np.uint8)
    arr[0, :] = arr[-1, :] = arr[:, 0] = arr[:, -1] = (255, 0, 0)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def fake_objectnet(root: Path, per_class: int = 2) -> Path:
    """objectnet-1.0/ with images/<folder>/*.png and a small mappings/ folder in the real files' formats."""
    base = root / "objectnet-1.0"
    maps = base / "mappings"
    maps.mkdir(parents=True)
    label_of = {i: f"imagenet class {i}" for i in range(1000)}
    lines = [""] * 1000
    for index in range(1000):
        lines[id2012(index)] = label_of[index]
    (maps / "imagenet_to_label_2012_v2").write_text("\n".join(lines) + "\n")
    (maps / "pytorch_to_imagenet_2012_id.json").write_text(json.dumps({str(i): id2012(i) for i in range(1000)}))
    folders = {folder: label for folder, (label, _) in OBJECTNET_CLASSES.items()}
    folders[OBJECTNET_UNMAPPED] = "Air freshener"
    (maps / "folder_to_objectnet_label.json").write_text(json.dumps(folders))
    (maps / "objectnet_to_imagenet_1k.json").write_text(json.dumps(
        {label: "; ".join(label_of[i] for i in indices) for label, indices in OBJECTNET_CLASSES.values()}))
    for number, folder in enumerate(folders):
        (base / "images" / folder).mkdir(parents=True)
        for i in range(per_class):
            (base / "images" / folder / f"{i}.png").write_bytes(red_framed_png(seed=number * per_class + i))
    return base


def cifar_pixels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n random (32, 32, 3) uint8 images and labels 0 ... 9."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def fake_cifar10_bin(root: Path, images: np.ndarray, labels: np.ndarray, name: str = "test_batch.bin") -> Path:
    """cifar-10-batches-bin/<name>: per image a label byte, then the R, G and B planes."""
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    records = np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1)
    (folder / name).write_bytes(records.tobytes())
    return folder
