"""Safe image decoding shared by uploads and image folders: formats, EXIF, every mode to RGB, size limits."""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow format names we decode; everything else Pillow can read (ICO, PSD, EPS, ...) is refused on purpose,
# which also keeps rarely audited decoders away from untrusted uploads.
SUPPORTED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"})
# Extensions for Streamlit's file_uploader(type=...) and for image-folder scans.
UPLOAD_TYPES: list[str] = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_BYTES = 25 * 1024 * 1024

_IMAGE_SUFFIXES = frozenset(f".{ext}" for ext in UPLOAD_TYPES)
_FIX_FORMAT = "save it as PNG or JPEG and try again"
# warnings.catch_warnings mutates process-global state; serialise our use of it across Streamlit threads.
_OPEN_LOCK = threading.Lock()


class ImageDecodeError(ValueError):
    """An input that cannot be used as an image; the message names the file, the reason and the fix."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class ImageFolderError(ValueError):
    """An image folder whose layout does not match the class names (empty or unknown class folder)."""


@dataclass(frozen=True)
class DecodeResult:
    """One file of a batch: either a decoded RGB image or the error that refused it."""

    name: str
    image: Image.Image | None = None
    error: ImageDecodeError | None = None

    @property
    def ok(self) -> bool:
        """True when the file decoded."""
        return self.image is not None


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


def _sniff(fp: BinaryIO) -> str:
    """Name the kind of a non-image file from its first bytes, for a friendlier message."""
    fp.seek(0)
    head = fp.read(512).lstrip()
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if b"<svg" in head.lower():
        return "an SVG (vector) drawing"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (.docx, .zip, ...)"
    return "unrecognised content"


def _open(fp: BinaryIO, name: str) -> Image.Image:
    """Identify the image from its header (no pixel decoding yet), refusing unsupported kinds and bombs."""
    try:
        with _OPEN_LOCK, warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its pixel limit; treat both as a refusal.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(name, f"refused as a possible decompression bomb ({exc}); "
                               "downscale the image first") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(name, f"not an image ({_sniff(fp)}); expected PNG, JPEG, WebP, BMP, GIF "
                               f"or TIFF: {_FIX_FORMAT}") from None
    except Exception as exc:  # malformed headers raise anything from SyntaxError to struct.error
        raise ImageDecodeError(name, f"truncated or corrupt image ({type(exc).__name__}: {exc}); "
                               "re-export or re-download the file") from None
    if img.format not in SUPPORTED_FORMATS:
        raise ImageDecodeError(name, f"{img.format} images are not supported; {_FIX_FORMAT}")
    return img


def _check_pixels(img: Image.Image, name: str, max_pixels: int) -> None:
    """Refuse images over Pillow's bomb limit (backstop for the warning filter) or our configured size."""
    width, height = img.size
    pixels = width * height
    if pixels <= 0:
        raise ImageDecodeError(name, f"image has no pixels ({width}x{height}); re-export the image")
    if Image.MAX_IMAGE_PIXELS is not None and pixels > Image.MAX_IMAGE_PIXELS:
        raise ImageDecodeError(name, f"refused as a possible decompression bomb ({width}x{height} pixels, "
                               f"Pillow's limit is {Image.MAX_IMAGE_PIXELS}); downscale the image first")
    if pixels > max_pixels:
        raise ImageDecodeError(name, f"image is {width}x{height} ({pixels:,} pixels), above the limit of "
                               f"{max_pixels:,} pixels; downscale it and try again")


def _grey_to_uint8(img: Image.Image) -> Image.Image:
    """Scale high-bit-depth greyscale (I;16*, I, F) to 8 bits instead of Pillow's clamping convert('L')."""
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        out = arr.astype(np.uint16) >> 8  # full 16-bit range: 65535 -> 255
    elif img.mode == "I":
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        if lo >= 0 and hi <= 0xFFFF:  # how Pillow and TIFF store 16-bit samples in 32-bit ints
            out = arr.astype(np.int64) >> 8
        else:  # genuinely 32-bit data: map its own range onto 0..255
            out = (arr.astype(np.float64) - lo) * (255.0 / max(hi - lo, 1))
    else:  # "F": float samples, usually 0..1 or 0..255; otherwise map the finite range onto 0..255
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        if lo >= 0.0 and hi <= 1.0:
            out = arr * 255.0
        elif lo >= 0.0 and hi <= 255.0:
            out = arr
        else:
            out = (arr - lo) * (255.0 / max(hi - lo, 1e-12))
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(out)  # 2-D uint8 -> mode "L"


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: transparency composited on white, 16-bit and float grey scaled."""
    if img.mode.startswith("I") or img.mode == "F":
        return _grey_to_uint8(img).convert("RGB")
    # "transparency" covers palette tRNS and single-colour transparency in L/RGB images.
    if img.mode in {"RGBA", "RGBa", "LA", "La", "PA"} or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # CMYK, L, 1, P, YCbCr, HSV ... all have a direct conversion in Pillow.
    return img if img.mode == "RGB" else img.convert("RGB")


def _human_bytes(n: int) -> str:
    """Sizes as people read them: MB for large files, exact bytes for small ones."""
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n:,} bytes"


def _check_bytes(size: int, name: str, max_bytes: int) -> None:
    """Refuse empty and oversized files before anything is decoded."""
    if size == 0:
        raise ImageDecodeError(name, "empty file (0 bytes); upload the image again")
    if size > max_bytes:
        raise ImageDecodeError(name, f"file is {_human_bytes(size)}, above the {_human_bytes(max_bytes)} "
                               "limit; downscale or recompress it")


def _source(data: bytes | bytearray | memoryview | str | Path, name: str | None,
            max_bytes: int) -> tuple[BinaryIO, str]:
    """Open bytes or a file path as a binary stream and a display name, size-checked first."""
    if isinstance(data, (str, Path)):
        path = Path(data)
        name = name or path.name
        try:
            _check_bytes(path.stat().st_size, name, max_bytes)
            return path.open("rb"), name
        except OSError as exc:
            raise ImageDecodeError(name, f"cannot read the file ({exc.strerror or exc})") from None
    name = name or "<upload>"
    _check_bytes(len(data), name, max_bytes)
    return io.BytesIO(data), name


def probe_image(data: bytes | str | Path, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[str, tuple[int, int]]:
    """Check an image's header only (cheap): return (format, (width, height)) or raise ImageDecodeError."""
    fp, name = _source(data, name, max_bytes)
    with fp, _open(fp, name) as img:
        _check_pixels(img, name, max_pixels)
        return str(img.format), img.size


def decode_image(data: bytes | str | Path, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_bytes: int = DEFAULT_MAX_BYTES) -> Image.Image:
    """Decode bytes or a file into an RGB image (EXIF-oriented), or raise ImageDecodeError."""
    fp, name = _source(data, name, max_bytes)
    with fp, _open(fp, name) as img:
        _check_pixels(img, name, max_pixels)
        try:
            img.load()  # decode now, inside the try: truncation surfaces here (LOAD_TRUNCATED_IMAGES stays off)
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(name, f"refused as a possible decompression bomb ({exc}); "
                                   "downscale the image first") from None
        except Exception as exc:
            raise ImageDecodeError(name, f"truncated or corrupt image data ({exc}); "
                                   "re-export or re-download the file") from None
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # malformed EXIF should not make a readable picture unusable
            oriented = img.copy()
    try:
        return to_rgb(oriented)
    except Exception as exc:
        raise ImageDecodeError(name, f"cannot convert {oriented.mode} pixels to RGB ({exc}); "
                               f"{_FIX_FORMAT}") from None


def decode_many(items: Iterable[tuple[str, bytes]], max_pixels: int = DEFAULT_MAX_PIXELS,
                max_bytes: int = DEFAULT_MAX_BYTES) -> list[DecodeResult]:
    """Decode a batch of (name, bytes); a bad file becomes an error result and never stops the batch."""
    results = []
    for name, data in items:
        try:
            results.append(DecodeResult(name, image=decode_image(data, name, max_pixels, max_bytes)))
        except ImageDecodeError as exc:
            results.append(DecodeResult(name, error=exc))
    return results


def _normalise(name: str) -> str:
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
        loose.setdefault(_normalise(n), []).append(i)
    index, unknown = {}, []
    for folder, target in targets.items():
        if target in exact:
            index[folder] = exact[target]
        elif len(loose.get(_normalise(target), [])) == 1:
            index[folder] = loose[_normalise(target)][0]
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
                      max_bytes: int = DEFAULT_MAX_BYTES) -> FolderScan:
    """Scan root/<class>/**/<image> (torchvision ImageFolder layout); header-check files, skip bad ones."""
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(f"{root}: image folder not found; check the `source` path in the experiment")
    # Hidden entries (.git, .DS_Store, ._AppleDouble) are never data.
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ImageFolderError(f"{root}: no class folders; expected the layout root/<class name>/<image>")
    names, index = _resolve_classes(folders, classnames, mapping, root)
    scan = FolderScan(root=root, classnames=names, max_pixels=max_pixels, max_bytes=max_bytes)
    scan.skipped.extend((p, "not inside a class folder") for p in sorted(root.iterdir())
                        if p.is_file() and not p.name.startswith("."))
    candidates: dict[str, list[Path]] = {}
    for folder in folders:
        files = sorted(p for p in (root / folder).rglob("*")
                       if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
        candidates[folder] = [p for p in files if p.suffix.lower() in _IMAGE_SUFFIXES]
        scan.skipped.extend((p, f"not an image file (supported: {', '.join(UPLOAD_TYPES)})")
                            for p in files if p.suffix.lower() not in _IMAGE_SUFFIXES)
    empty = [folder for folder, images in candidates.items() if not images]
    if empty:  # checked before any decoding so a layout mistake fails fast
        raise ImageFolderError(f"{root}: class folder(s) {', '.join(repr(f) for f in empty)} contain no images "
                               f"({', '.join(UPLOAD_TYPES)}); add images or remove the folder")
    for folder, images in candidates.items():
        for path in images:
            try:
                probe_image(path, str(path.relative_to(root)), max_pixels, max_bytes)
            except ImageDecodeError as exc:
                scan.skipped.append((path, exc.reason))
            else:
                scan.samples.append((path, index[folder]))
    return scan
