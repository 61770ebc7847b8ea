"""Fake copies of the transfer datasets (CIFAR-100, Stanford Cars, DTD, SUN397, Food101) in their released layouts,
with a few classes each (the rest of each class list has no images), and a level-5 MAT-file writer for Cars' devkit."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from fake_datasets import png_bytes

from wiseft_explorer.experiment import class_list

# ---- a level-5 MAT-file writer (MathWorks' "MAT-File Format"), as MATLAB and scipy.io.savemat write them ----


def _tag(kind: int, payload: bytes) -> bytes:
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _header(cls: int, dims: tuple[int, ...], name: str) -> bytes:
    return (_tag(6, struct.pack("<II", cls, 0)) + _tag(5, struct.pack(f"<{len(dims)}i", *dims))
            + _tag(1, name.encode("ascii")))


def mat_matrix(value, name: str = "") -> bytes:
    """One miMATRIX element: str (char, UTF-16 codes), int (uint16), list of str (cell) or list of dicts (struct)."""
    if isinstance(value, str):
        body = _header(4, (1, len(value)), name) + _tag(4, np.array([ord(c) for c in value], "<u2").tobytes())
    elif isinstance(value, int):  # stored as uint16 in a double-class array, as MATLAB compresses small integers
        body = _header(6, (1, 1), name) + _tag(4, struct.pack("<H", value))
    elif value and isinstance(value[0], dict):
        fields = list(value[0])
        names = b"".join(f.encode("ascii").ljust(32, b"\0") for f in fields)
        body = (_header(2, (1, len(value)), name) + struct.pack("<HHI", 5, 4, 32) + _tag(1, names)
                + b"".join(mat_matrix(item[f]) for item in value for f in fields))
    else:
        body = _header(1, (1, len(value)), name) + b"".join(mat_matrix(item) for item in value)
    return _tag(14, body)


def write_mat(path: Path, variables: dict, compress: bool = True) -> Path:
    """A MAT-file with these variables, each element zlib-compressed (MATLAB's default) or plain."""
    head = b"MATLAB 5.0 MAT-file, written by the tests".ljust(116) + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    elements = [mat_matrix(value, name) for name, value in variables.items()]
    if compress:
        elements = [struct.pack("<II", 15, len(z)) + z for z in (zlib.compress(e) for e in elements)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head + b"".join(elements))
    return path


# ---- the datasets ----

def _images(root: Path, relative: list[str]) -> None:
    data = png_bytes()
    for rel in relative:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def fake_cifar100_bin(root: Path, n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cifar-100-binary/ with train.bin and test.bin (n records each: coarse label, fine label, the RGB planes)."""
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    fine, coarse = rng.integers(0, 100, n), rng.integers(0, 20, n)
    planes = images.transpose(0, 3, 1, 2).reshape(n, -1)
    records = np.concatenate([coarse.astype(np.uint8)[:, None], fine.astype(np.uint8)[:, None], planes], axis=1)
    for name in ("train.bin", "test.bin"):
        (folder / name).write_bytes(records.tobytes())
    names = [c.replace(" ", "_") for c in class_list("cifar100")]
    (folder / "fine_label_names.txt").write_text("\n".join(names) + "\n")
    return images, fine, coarse


CARS = {"train": [("00001.jpg", 1), ("00002.jpg", 196), ("00003.jpg", 14)], "test": [("00001.jpg", 14), ("00002.jpg", 2)]}


def fake_stanford_cars(root: Path, compress: bool = True) -> Path:
    """stanford_cars/ as torchvision's StanfordCars reads it: devkit/*.mat, cars_train/, cars_test/ and the test
    labels in cars_test_annos_withlabels.mat (the `class` field counts from 1)."""
    base = root / "stanford_cars"
    write_mat(base / "devkit" / "cars_meta.mat", {"class_names": list(class_list("stanford-cars"))}, compress)
    for split, mat in (("train", base / "devkit" / "cars_train_annos.mat"),
                       ("test", base / "cars_test_annos_withlabels.mat")):
        annotations = [{"bbox_x1": 3, "bbox_y1": 4, "bbox_x2": 50, "bbox_y2": 40, "class": cls, "fname": name}
                       for name, cls in CARS[split]]
        write_mat(mat, {"annotations": annotations}, compress)
        _images(base / f"cars_{split}", [name for name, _ in CARS[split]])
    return base


def dtd_lines(split: str) -> list[str]:
    """A fake split file: one image of every class (as in the real ones, every class is there), in reverse order."""
    return [f"{c}/{c}_{split}_0001.jpg" for c in reversed(class_list("dtd"))]


def fake_dtd(root: Path) -> Path:
    """dtd/ as its release unpacks: images/<class>/*.jpg and labels/{train,val,test}<1..10>.txt."""
    base = root / "dtd"
    for split in ("train", "val", "test"):
        lines = dtd_lines(split)
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
        (base / "labels" / f"{split}2.txt").write_text(lines[0] + "\n")  # another partition, not read
        _images(base / "images", lines)
    return base


SUN_CLASSES = ["/a/abbey", "/a/apartment_building/outdoor", "/y/youth_hostel"]
SUN = {"Training_01.txt": ["/a/abbey/sun_aaa.jpg", "/y/youth_hostel/sun_bbb.jpg"],
       "Testing_01.txt": ["/a/apartment_building/outdoor/sun_ccc.jpg", "/a/abbey/sun_ddd.jpg"]}


def fake_sun397(root: Path, partitions: bool = True) -> Path:
    """SUN397/ with ClassName.txt and <letter>/<class>/sun_*.jpg; Partitions/ (from the separate Partitions.zip)."""
    base = root / "SUN397"
    base.mkdir(parents=True)
    names = [f"/{c[0]}/{c.replace(' ', '_')}" for c in class_list("sun397")]
    names[names.index("/a/apartment_building_outdoor")] = "/a/apartment_building/outdoor"
    (base / "ClassName.txt").write_text("\n".join(names) + "\n")
    for file, lines in SUN.items():
        _images(base, [line[1:] for line in lines])
        if partitions:
            (base / "Partitions").mkdir(exist_ok=True)
            (base / "Partitions" / file).write_text("\n".join(lines) + "\n")
    return base


FOOD = {"train": {"apple_pie": ["1005649", "1011328"], "waffles": ["1000"]}, "test": {"waffles": ["2000"],
                                                                                       "baklava": ["3000"]}}


def fake_food101(root: Path) -> Path:
    """food-101/ as released: images/<class>/<id>.jpg, meta/classes.txt and meta/{train,test}.json."""
    base = root / "food-101"
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "classes.txt").write_text("\n".join(c.replace(" ", "_") for c in class_list("food101")))
    for split, table in FOOD.items():  # every class is a key, as in the real files; most have no image here
        every = {c.replace(" ", "_"): [f"{c.replace(' ', '_')}/{i}" for i in table.get(c.replace(" ", "_"), [])]
                 for c in reversed(class_list("food101"))}
        (base / "meta" / f"{split}.json").write_text(json.dumps(every))
        _images(base / "images", [f"{c}/{i}.jpg" for c, ids in table.items() for i in ids])
    return base
