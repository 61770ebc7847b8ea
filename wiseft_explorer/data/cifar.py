"""CIFAR-10, CIFAR-10.1, CIFAR-10.2 and CIFAR-100 read from plain arrays; pickled releases are refused, not loaded.

CIFAR-10's and CIFAR-100's Python releases and CIFAR-10.2's `.npy` files are pickles (loading one can run code), so only the binary
CIFAR-10 and CIFAR-100 releases, CIFAR-10.1's plain `.npy` arrays and CIFAR-10.2 converted once by `convert --trust-pickle` are read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..experiment.presets import PresetError, PresetImages
from ..store.atomic import atomic_path

RECORD = 1 + 32 * 32 * 3  # the binary release: one label byte, then the red, green and blue 32x32 planes
CIFAR101_VERSIONS = ("v6", "v4")  # the paper uses v6; v4 is the older release with the same format
CLASSES = 10


def _checked(key: str, source: Path, images: np.ndarray, labels: np.ndarray, classes: int = CLASSES) -> PresetImages:
    """Validate shapes, dtypes and label range of a decoded test set."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise PresetError(key, source, f"images must be uint8 (N, 32, 32, 3), got {images.dtype} {images.shape}")
    labels = np.asarray(labels).astype(np.int64).reshape(-1)
    if len(labels) != len(images):
        raise PresetError(key, source, f"{len(images)} images but {len(labels)} labels")
    if len(labels) == 0 or labels.min() < 0 or labels.max() >= classes:
        raise PresetError(key, source, f"labels must be class indices 0 ... {classes - 1}")
    return PresetImages(labels=labels, pixels=np.ascontiguousarray(images))


def _records(key: str, source: Path, path: Path, record: int = RECORD) -> np.ndarray:
    """One binary batch file as (N, record) uint8 records (CIFAR-100's carry two label bytes)."""
    if not path.is_file():
        raise PresetError(key, source, f"{path.name} not found")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise PresetError(key, source, f"{path.name} is {raw.size} bytes, not a whole number of {record}-byte records")
    return raw.reshape(-1, record)


def read_cifar10(source: Path, key: str = "cifar10") -> PresetImages:
    """CIFAR-10 from the binary release: the 10,000 test images, or (cifar10-train) the 50,000 training images."""
    folder = source / "cifar-10-batches-bin" if (source / "cifar-10-batches-bin").is_dir() else source
    if (folder / "test_batch").is_file() or folder.name == "cifar-10-batches-py":
        raise PresetError(key, source, "this is CIFAR-10's Python release, whose files are pickles and are not "
                                       "loaded; download the binary release (cifar-10-binary.tar.gz) instead")
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if key == "cifar10-train" else ["test_batch.bin"]
    records = np.concatenate([_records(key, source, folder / name) for name in names])
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # planes -> (N, H, W, RGB)
    return _checked(key, source, images, records[:, 0])


def read_cifar100(source: Path, key: str = "cifar100") -> PresetImages:
    """CIFAR-100 from the binary release (cifar-100-binary/test.bin or train.bin: a coarse and a fine label byte,
    then the planes): the fine labels, whose order is fine_label_names.txt's, checked against CLIP's class list."""
    from .transfer_sets import checked_classes

    folder = source / "cifar-100-binary" if (source / "cifar-100-binary").is_dir() else source
    if (folder / "test").is_file() or folder.name == "cifar-100-python":
        raise PresetError(key, source, "this is CIFAR-100's Python release, whose files are pickles and are not "
                                       "loaded; download the binary release (cifar-100-binary.tar.gz) instead")
    names = folder / "fine_label_names.txt"
    if not names.is_file():
        raise PresetError(key, source, "fine_label_names.txt not found")
    checked_classes(key, source, [n for n in names.read_text().splitlines() if n.strip()])
    records = _records(key, source, folder / ("train.bin" if key == "cifar100-train" else "test.bin"), RECORD + 1)
    images = records[:, 2:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return _checked(key, source, images, records[:, 1], classes=100)


def _plain_npy(key: str, source: Path, path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:  # numpy's message for object arrays, i.e. a pickle inside the .npy
        raise PresetError(key, source, f"{path.name} holds pickled objects, which are not loaded") from err
    except OSError as err:
        raise PresetError(key, source, f"cannot read {path.name}: {err}") from err


def read_cifar101(source: Path) -> PresetImages:
    """CIFAR-10.1's 2,000 images: `cifar10.1_v6_data.npy` and `cifar10.1_v6_labels.npy` (plain arrays)."""
    for version in CIFAR101_VERSIONS:
        data, labels = (source / f"cifar10.1_{version}_{part}.npy" for part in ("data", "labels"))
        if data.is_file() and labels.is_file():
            return _checked("cifar10.1", source, _plain_npy("cifar10.1", source, data),
                            _plain_npy("cifar10.1", source, labels))
    raise PresetError("cifar10.1", source, "cifar10.1_v6_data.npy and cifar10.1_v6_labels.npy not found")


def read_cifar102(source: Path) -> PresetImages:
    """CIFAR-10.2's 2,000 test images from the plain `.npz` that `convert --trust-pickle` writes."""
    path = source if source.is_file() else source / "cifar102_test.npz"
    pickled = source if source.suffix == ".npy" else source / "cifar102_test.npy"
    if not path.is_file() or path.suffix != ".npz":
        if pickled.is_file():
            raise PresetError("cifar10.2", source, f"{pickled.name} holds a pickled dict, which is not loaded by "
                                                   "default; if you trust the file, convert it once with `python -m "
                                                   f"wiseft_explorer convert --trust-pickle {pickled} "
                                                   f"{pickled.with_suffix('.npz')}`")
        raise PresetError("cifar10.2", source, "cifar102_test.npz not found")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            return _checked("cifar10.2", source, arrays["images"], arrays["labels"])
    except (KeyError, ValueError, OSError) as err:
        raise PresetError("cifar10.2", source, f"{path.name} needs plain 'images' and 'labels' arrays ({err})") from err


def convert_cifar102(pickled: Path, out: Path) -> Path:
    """Turn CIFAR-10.2's pickled `.npy` dict into a plain `.npz` (only for a file you trust: it is unpickled)."""
    content = np.load(pickled, allow_pickle=True)
    table = content.item() if content.dtype == object and content.shape == () else None
    if not isinstance(table, dict) or not {"images", "labels"} <= set(table):
        raise ValueError(f"{pickled}: expected CIFAR-10.2's dict with 'images' and 'labels'")
    checked = _checked("cifar10.2", pickled, np.asarray(table["images"]), np.asarray(table["labels"]))
    assert checked.pixels is not None  # _checked always returns the pixels it validated
    out = Path(out)
    with atomic_path(out) as tmp, open(tmp, "xb") as fh:  # a file object: np.savez would add .npz to a name
        np.savez(fh, images=checked.pixels, labels=checked.labels)
    return out
