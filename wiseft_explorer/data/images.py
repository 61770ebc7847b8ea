"""Safe image decoding shared by uploads and image folders: formats, EXIF, every mode to RGB, size limits."""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
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

_FIX_FORMAT = "save it as PNG or JPEG and try again"
# warnings.catch_warnings mutates process-global state; serialise our use of it across Streamlit threads.
_OPEN_LOCK = threading.Lock()


class ImageDecodeError(ValueError):
    """An input that cannot be used as an image; the message names the file, the reason and the fix."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


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
                               "downscale the image first") from exc
    except UnidentifiedImageError:  # Pillow's "cannot identify image file" says less than the sniffed kind
        raise ImageDecodeError(name, f"not an image ({_sniff(fp)}); expected PNG, JPEG, WebP, BMP, GIF "
                               f"or TIFF: {_FIX_FORMAT}") from None
    # Deliberately broad: the bytes are untrusted and Pillow's header parsers raise anything from SyntaxError to
    # struct.error; whatever it is, this one file is unreadable and the batch it came in goes on.
    except Exception as exc:
        raise ImageDecodeError(name, f"truncated or corrupt image ({type(exc).__name__}: {exc}); "
                               "re-export or re-download the file") from exc
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
    out: np.ndarray
    lo: float
    hi: float
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
            raise ImageDecodeError(name, f"cannot read the file ({exc.strerror or exc})") from exc
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
                                   "downscale the image first") from exc
        except Exception as exc:  # deliberately broad, as in _open: Pillow's decoders raise many types
            raise ImageDecodeError(name, f"truncated or corrupt image data ({exc}); "
                                   "re-export or re-download the file") from exc
        try:
            oriented = ImageOps.exif_transpose(img)
        except Exception:  # malformed EXIF should not make a readable picture unusable
            oriented = img.copy()
    try:
        return to_rgb(oriented)
    except Exception as exc:  # deliberately broad: a mode Pillow cannot convert fails this file, not the batch
        raise ImageDecodeError(name, f"cannot convert {oriented.mode} pixels to RGB ({exc}); "
                               f"{_FIX_FORMAT}") from exc


def _open_as_benchmark(path: Path) -> tuple[BinaryIO, Image.Image]:
    """Open a file as torchvision's loader does: any format Pillow reads, only Pillow's own bomb error refuses it."""
    try:
        fp = path.open("rb")
    except OSError as exc:
        raise ImageDecodeError(str(path), f"cannot read the file ({exc.strerror or exc})") from exc
    try:
        return fp, Image.open(fp)
    except Exception as exc:  # deliberately broad, as in _open: the file is unreadable whatever Pillow raised
        fp.close()
        raise ImageDecodeError(str(path), f"Pillow cannot open it ({type(exc).__name__}: {exc})") from exc


def probe_as_benchmark(path: str | Path) -> tuple[str, tuple[int, int]]:
    """Check a dataset image's header as torchvision would open it (no size limit, any format): (format, size)."""
    fp, img = _open_as_benchmark(Path(path))
    with fp, img:
        return str(img.format), img.size


def read_as_benchmark(path: str | Path) -> Image.Image:
    """A dataset image exactly as torchvision's `pil_loader` gives it: `Image.open(f).convert("RGB")`.

    No EXIF rotation, transparency dropped rather than composited on white, high-bit-depth grey clamped as Pillow
    converts it, and no size limit beyond Pillow's own decompression-bomb error: the benchmark's numbers.
    """
    fp, img = _open_as_benchmark(Path(path))
    with fp, img:
        try:
            return img.convert("RGB")
        except Exception as exc:  # deliberately broad: truncated data and odd modes fail this file only
            raise ImageDecodeError(str(path), f"cannot decode it ({type(exc).__name__}: {exc})") from exc


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
