"""Image folders in torchvision's ImageFolder layout: class folders matched to class names, bad files skipped."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from .images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    UPLOAD_TYPES,
    ImageDecodeError,
    decode_image,
    probe_as_benchmark,
    probe_image,
)

_IMAGE_SUFFIXES = frozenset(f".{ext}" for ext in UPLOAD_TYPES)


class ImageFolderError(ValueError):
    """An image folder whose layout does not match the class names (empty or unknown class folder)."""



@dataclass
class FolderScan:
    """An ImageFolder-layout scan: usable samples (path, class index) and skipped files (path, reason)."""

    root: Path
    classnames: list[str]
    samples: list[tuple[Path, int]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_bytes: int = DEFAULT_MAX_BYTES

    @property
    def class_indices(self) -> list[int]:
        """Sorted indices (into `classnames`) of the classes that have at least one sample."""
        return sorted({label for _, label in self.samples})

    def decode(self) -> Iterator[tuple[Path, Image.Image, int]]:
        """Yield (path, RGB image, class index) per sample; files failing to decode are added to `skipped`."""
        for path, label in self.samples:
            try:
                image = decode_image(path, str(path.relative_to(self.root)), self.max_pixels, self.max_bytes)
            except ImageDecodeError as exc:  # e.g. truncated data, which a header check cannot see
                self.skipped.append((path, exc.reason))
            else:
                yield path, image, label


def _benchmark_suffixes() -> frozenset[str]:
    """The file extensions torchvision's ImageFolder loads (the paper's datasets are read by it)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return frozenset(IMG_EXTENSIONS)


def loose_name(name: str) -> str:
    """Loose form of a class name so `golden_retriever` matches `golden retriever`."""
    return " ".join(name.replace("_", " ").replace("-", " ").lower().split())


def _resolve_classes(folders: list[str], classnames: Sequence[str] | None,
                     mapping: Mapping[str, str] | None, root: Path) -> tuple[list[str], dict[str, int]]:
    """Map each class folder to an index into the class names; raise naming every folder that has none."""
    mapping = dict(mapping or {})
    targets = {folder: mapping.get(folder, folder) for folder in folders}
    if classnames is None:
        names = sorted(set(targets.values()))
        return names, {folder: names.index(target) for folder, target in targets.items()}
    names = list(classnames)
    exact = {n: i for i, n in enumerate(names)}
    loose: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        loose.setdefault(loose_name(n), []).append(i)
    index, unknown = {}, []
    for folder, target in targets.items():
        if target in exact:
            index[folder] = exact[target]
        elif len(loose.get(loose_name(target), [])) == 1:
            index[folder] = loose[loose_name(target)][0]
        else:
            unknown.append(folder if target == folder else f"{folder} -> {target}")
    if unknown:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise ImageFolderError(
            f"{root}: class folder(s) {', '.join(repr(u) for u in unknown)} match no class name "
            f"(known: {shown}); rename the folder or add a mapping file (JSON: folder name -> class name)")
    return names, index


def scan_image_folder(root: Path, classnames: Sequence[str] | None = None,
                      mapping: Mapping[str, str] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                      max_bytes: int = DEFAULT_MAX_BYTES, folder_index: Mapping[str, int] | None = None,
                      ) -> FolderScan:
    """Scan root/<class>/**/<image> (torchvision ImageFolder layout); header-check files, skip bad ones.

    `folder_index` (dataset presets) gives each folder's class index directly; folders it does not list are left
    out, and the files are those torchvision's ImageFolder takes (its extensions, other files ignored as it ignores
    them), header-checked as its loader opens them: no size limit, any format Pillow reads.
    """
    benchmark = folder_index is not None
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(f"{root}: image folder not found; check the `source` path in the experiment")
    # Hidden entries (.git, .DS_Store, ._AppleDouble) are never data.
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ImageFolderError(f"{root}: no class folders; expected the layout root/<class name>/<image>")
    if folder_index is not None:
        folders = [folder for folder in folders if folder in folder_index]
        names, index = list(classnames or ()), dict(folder_index)
    else:
        names, index = _resolve_classes(folders, classnames, mapping, root)
    scan = FolderScan(root=root, classnames=names, max_pixels=max_pixels, max_bytes=max_bytes)
    if not benchmark:
        scan.skipped.extend((p, "not inside a class folder") for p in sorted(root.iterdir())
                            if p.is_file() and not p.name.startswith("."))
    suffixes = _benchmark_suffixes() if benchmark else _IMAGE_SUFFIXES
    candidates: dict[str, list[Path]] = {}
    for folder in folders:
        files = sorted(p for p in (root / folder).rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
        candidates[folder] = [p for p in files if p.suffix.lower() in suffixes]
        scan.skipped.extend((p, f"not an image file (supported: {', '.join(UPLOAD_TYPES)})")
                            for p in files if p.suffix.lower() not in suffixes and not benchmark)
    empty = [folder for folder, images in candidates.items() if not images]
    if empty:  # checked before any decoding so a layout mistake fails fast
        raise ImageFolderError(f"{root}: class folder(s) {', '.join(repr(f) for f in empty)} contain no images "
                               f"({', '.join(UPLOAD_TYPES)}); add images or remove the folder")
    for folder, images in candidates.items():
        for path in images:
            try:
                if benchmark:
                    probe_as_benchmark(path)
                else:
                    probe_image(path, str(path.relative_to(root)), max_pixels, max_bytes)
            except ImageDecodeError as exc:
                scan.skipped.append((path, exc.reason))
            else:
                scan.samples.append((path, index[folder]))
    return scan
