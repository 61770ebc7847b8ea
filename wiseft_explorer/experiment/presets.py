"""The paper's datasets as presets: what each one is called, which classes it scores, and the layout it expects.

This module is the catalogue only (no torch, no file reading), so experiment files can be checked cheaply; the
readers live in `imagenet_sets.py` and `cifar.py`, and `data.py` turns what they read into evaluation sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .spec import DatasetSpec, ExperimentError

if TYPE_CHECKING:  # the catalogue is read on the app's fast path: no numpy import there
    import numpy as np


@dataclass(frozen=True)
class Preset:
    """One dataset the paper evaluates on: its key in experiment files, title, class list and expected layout."""

    key: str
    title: str
    classes: str  # the named class list (labelsets.CLASS_LISTS) its labels index into
    templates: str  # a prompt set of the paper's code (it has none for CIFAR: its ImageNet set serves)
    layout: str  # the folder layout `source` must point at, shown in every layout error
    metric: str = "top1"  # what its curves show, named as the paper's results files name it (results.metrics)


# WILDS' released layouts (the `wilds` package's downloads), read from their metadata CSVs (data/wilds_sets.py).
_IWILDCAM = ("iwildcam_v2.0/ holding metadata.csv (columns split, y, filename) and train/<filename> images "
             "(the WILDS release)")
_FMOW = ("fmow_v1.1/ holding rgb_metadata.csv (split, category, country_code, timestamp), "
         "country_code_mapping.csv (alpha-3, region) and images/rgb_img_<row>.png (the WILDS release)")

# The video shifts (data/video_sets.py): ImageNet's logits maxed over each video class's ImageNet classes.
_VID = ("imagenet-vid-robust/ of the release (imagenet_vid_ytbb_robust.tar.gz) holding val/<video>/<frame>.JPEG, "
        "metadata/labels.json, metadata/pmsets.json and misc/ (imagenet_class_index.json, "
        "imagenet_vid_class_index.json, rev_wnid_map.json)")
_YTBB = ("ytbb-robust/ of the same release holding ytbb_videos/<ytid>_<ms>/frame-<n>.jpg and, in metadata/ (or "
         "beside ytbb_videos/), anchor_labels.json, pmk_labels.json and ytbb_robustness_test_anchors_full.csv (the "
         "paper's code ships these three in src/datasets/ytbb-robust_metadata/: copy them if your copy lacks them)")


def _test_and_train(key: str, title: str, templates: str, layout: str) -> tuple[Preset, Preset]:
    """A dataset's test-split preset (`key`) and training-split preset (`key-train`); `layout` holds
    {test part|train part}."""
    head, rest = layout.split("{", 1)
    test, rest = rest.split("|", 1)
    train, tail = rest.split("}", 1)
    return (Preset(key, title, key, templates, head + test + tail),
            Preset(f"{key}-train", f"{title} train", key, templates, head + train + tail))


PRESETS: dict[str, Preset] = {p.key: p for p in (
    Preset("imagenet", "ImageNet", "imagenet", "openai",
           "val/<wnid>/*.JPEG: 1,000 WordNet-id folders (n01440764, ...) with the 50,000 validation images"),
    Preset("imagenet-v2", "ImageNet-V2", "imagenet", "openai",
           "imagenetv2-matched-frequency-format-val/<index>/*.jpeg: 1,000 folders named 0 ... 999 by class index"),
    Preset("imagenet-sketch", "ImageNet-Sketch", "imagenet", "openai",
           "sketch/<wnid>/*.JPEG: 1,000 WordNet-id folders"),
    Preset("imagenet-r", "ImageNet-R", "imagenet", "openai",
           "imagenet-r/<wnid>/*.jpg: the 200 WordNet-id folders of ImageNet-R"),
    Preset("imagenet-a", "ImageNet-A", "imagenet", "openai",
           "imagenet-a/<wnid>/*.jpg: the 200 WordNet-id folders of ImageNet-A"),
    Preset("objectnet", "ObjectNet", "imagenet", "openai",
           "objectnet-1.0/ holding images/<folder>/*.png and mappings/ (objectnet_to_imagenet_1k.json, "
           "folder_to_objectnet_label.json, pytorch_to_imagenet_2012_id.json, imagenet_to_label_2012_v2)"),
    Preset("cifar10", "CIFAR-10", "cifar10", "openai",
           "cifar-10-batches-bin/ holding test_batch.bin (the binary release, cifar-10-binary.tar.gz)"),
    Preset("cifar10-train", "CIFAR-10 train", "cifar10", "openai",
           "cifar-10-batches-bin/ holding data_batch_1.bin ... data_batch_5.bin (for fine-tuning, or a held-out "
           "sample of it as [id_val])"),
    Preset("cifar10.1", "CIFAR-10.1", "cifar10", "openai",
           "a folder holding cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy"),
    Preset("cifar10.2", "CIFAR-10.2", "cifar10", "openai",
           "a folder holding cifar102_test.npz (made from cifar102_test.npy by `convert --trust-pickle`)"),
    *(Preset(f"iwildcam{suffix}", f"iWildCam {title}", "iwildcam", "iwildcam", _IWILDCAM, "F1-macro_all")
      for suffix, title in (("-id-test", "ID test"), ("-test", "OOD test"))),
    *(Preset(f"fmow{suffix}", f"FMoW {title}", "fmow", "fmow", _FMOW, "acc_worst_region")
      for suffix, title in (("-id-test", "ID test"), ("-test", "OOD test"))),
    Preset("imagenet-vid-robust", "ImageNet-Vid-Robust", "imagenet", "openai", _VID, "pm10"),
    Preset("ytbb-robust", "YouTube-BB-Robust", "imagenet", "openai", _YTBB, "pm10"),
    # The transfer datasets of the paper's Table 2: test split by default, `-train` for fine-tuning. CIFAR-100's
    # prompts are the paper code's (as CIFAR-10's); the other four datasets are not in its code: CLIP's prompts.
    *_test_and_train("cifar100", "CIFAR-100", "openai",
                     "cifar-100-binary/ holding fine_label_names.txt and {test.bin|train.bin} (the binary release, "
                     "cifar-100-binary.tar.gz)"),
    *_test_and_train("stanford-cars", "Stanford Cars", "stanford-cars",
                     "stanford_cars/ as torchvision's StanfordCars reads it: devkit/cars_meta.mat, "
                     "{cars_test/ and cars_test_annos_withlabels.mat|cars_train/ and devkit/cars_train_annos.mat}"),
    *_test_and_train("dtd", "DTD", "dtd",
                     "dtd/ as released (dtd-r1.0.1.tar.gz): images/<class>/*.jpg and labels/{test1.txt|train1.txt} "
                     "(partition 1)"),
    *_test_and_train("sun397", "SUN397", "sun397",
                     "SUN397/ holding ClassName.txt, <letter>/<class>/sun_*.jpg and Partitions/{Testing_01.txt|"
                     "Training_01.txt} (unpack Partitions.zip inside SUN397/)"),
    *_test_and_train("food101", "Food-101", "food101",
                     "food-101/ as released: images/<class>/<id>.jpg and meta/{test.json|train.json}"),
)}
# Part of a preset set's cache key: bump when a reader's labels or pixels change (v2: torchvision's loader).
PRESET_VERSION = "presets-v2"


class PresetError(ValueError):
    """A preset's folder does not have the expected layout, or its files cannot be read safely."""

    def __init__(self, key: str, source: Path | str, problem: str) -> None:
        preset = PRESETS[key]
        super().__init__(f"{preset.title} ({key}) at {source}: {problem}. Expected layout: {preset.layout}")


def preset_options(table: dict, preset: str | None, where: str) -> dict[str, bool]:
    """A set's `skip_unreadable` (presets) and `crop_border` (ObjectNet) switches, checked against its preset."""
    options = {}
    for key, allowed in (("skip_unreadable", preset is not None), ("crop_border", preset == "objectnet")):
        if key not in table:
            continue
        if not isinstance(table[key], bool):
            raise ExperimentError(f"{where}.{key}: expected true or false, got {table[key]!r}")
        if not allowed:
            raise ExperimentError(f"{where}.{key}: only for " + ("a preset set (a folder set always skips "
                                  "unreadable files and says so)" if key == "skip_unreadable" else
                                  "preset = \"objectnet\" (the only dataset with a frame to cut)") + "; remove it")
        options[key] = table[key]
    return options


def objectnet_folders(source: Path) -> tuple[Path, Path]:
    """ObjectNet's (images/, mappings/) for a `source` naming objectnet-1.0/ or its images/ folder (mappings/ is
    then the sibling that labels them)."""
    if (source / "images").is_dir():
        return source / "images", source / "mappings"
    return source, source.parent / "mappings"


def preset_metric(spec: DatasetSpec) -> str:
    """The metric a set is scored by: its preset's ('top1' for folder and world sets)."""
    return PRESETS[spec.preset].metric if spec.preset in PRESETS else "top1"


def preset_of(key: str) -> Preset:
    """The preset called `key`, or a KeyError that lists the known ones."""
    if key not in PRESETS:
        raise KeyError(f"unknown preset {key!r} (known: {', '.join(PRESETS)})")
    return PRESETS[key]


@dataclass
class PresetImages:
    """What a preset reader found: labels (indices into the preset's class list) and where each image is."""

    labels: np.ndarray  # (N,) int64
    paths: list[str] | None = None  # image files, for folder presets
    pixels: np.ndarray | None = None  # (N,32,32,3) uint8, for the CIFAR arrays
    class_indices: list[int] | None = None  # the classes the set's logits are restricted to (R, A); None = all
    groups: tuple[tuple[int, ...], ...] | None = None  # ObjectNet: each label's classes, whose max logit it takes
    border: int = 0  # pixels cut from every side before preprocessing (ObjectNet's 1-pixel red frame)
    label_names: dict[int, str] | None = None  # ObjectNet: its own name for each label (e.g. "Alarm clock")
    regions: np.ndarray | None = None  # FMoW: (N,) each image's region, -1 for "Other" (worst-region accuracy)
    pmk: tuple[np.ndarray, np.ndarray] | None = None  # video sets: (anchor frames (A,K), right classes (N,L)), -1 pads
    skipped: list[tuple[str, str]] = field(default_factory=list)
