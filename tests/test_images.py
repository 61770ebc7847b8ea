"""Safe image decoding: formats, EXIF, modes, refusals, batches and image folders (all inputs generated here)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from wiseft_explorer.data import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    SUPPORTED_FORMATS,
    UPLOAD_TYPES,
    ImageDecodeError,
    ImageFolderError,
    decode_image,
    decode_many,
    probe_image,
    scan_image_folder,
)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def noise(size=(32, 24), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height, with almost no pixel data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def gradient(size=(32, 24)) -> Image.Image:
    """A smooth picture: lossy codecs keep it close, unlike noise."""
    x = np.linspace(0, 255, size[0])[None, :, None]
    y = np.linspace(0, 255, size[1])[:, None, None]
    arr = np.concatenate([np.broadcast_to(x, (size[1], size[0], 1)), np.broadcast_to(y, (size[1], size[0], 1)),
                          np.full((size[1], size[0], 1), 90.0)], axis=2)
    return Image.fromarray(arr.astype(np.uint8))


GOOD = encode(Image.new("RGB", (5, 4), (10, 200, 30)), "PNG")


def test_constants():
    assert {"PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"} == set(SUPPORTED_FORMATS)
    assert set(UPLOAD_TYPES) == {"png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"}
    assert DEFAULT_MAX_PIXELS < Image.MAX_IMAGE_PIXELS and DEFAULT_MAX_BYTES > 1 << 20
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("fmt, kwargs, lossless", [
    ("PNG", {}, True), ("JPEG", {"quality": 95}, False), ("WEBP", {"lossless": True}, True),
    ("BMP", {}, True), ("TIFF", {}, True), ("GIF", {}, False),
])
def test_format_round_trip(fmt, kwargs, lossless, tmp_path):
    src = gradient() if fmt != "GIF" else Image.new("RGB", (32, 24), (255, 0, 0))
    data = encode(src, fmt, **kwargs)
    path = tmp_path / f"img.{fmt.lower()}"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        out = decode_image(source, "img")
        assert out.mode == "RGB" and out.size == (32, 24)
        diff = np.abs(np.asarray(out, np.int16) - np.asarray(src, np.int16))
        assert diff.max() == 0 if lossless else diff.mean() < 8
    assert probe_image(data, "img") == (fmt, (32, 24))


def test_gif_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert np.asarray(decode_image(buf.getvalue(), "anim.gif"))[0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_applied(fmt):
    img = Image.new("RGB", (2, 1))
    img.putpixel((0, 0), (255, 0, 0))
    img.putpixel((1, 0), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    extra = {"JPEG": {"quality": 100}, "WEBP": {"lossless": True}}.get(fmt, {})
    out = decode_image(encode(img, fmt, exif=exif.tobytes(), **extra))
    assert out.size == (1, 2)
    if fmt != "JPEG":  # lossless formats: check the direction of the rotation too
        assert np.asarray(out)[:, 0].tolist() == [[255, 0, 0], [0, 0, 255]]


def test_alpha_modes_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    out = np.asarray(decode_image(encode(rgba, "PNG")))
    assert out[0, 0].tolist() == [255, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    half = np.asarray(decode_image(encode(Image.new("RGBA", (1, 1), (0, 0, 0, 128)), "PNG")))
    assert abs(int(half[0, 0, 0]) - 127) <= 1
    la = np.asarray(decode_image(encode(Image.new("LA", (2, 2), (0, 0)), "PNG")))
    assert la.min() == 255
    pal = Image.new("P", (2, 2), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    out = np.asarray(decode_image(encode(pal, "PNG", transparency=1)))
    assert out[0, 0].tolist() == [255, 255, 255]
    gif = np.asarray(decode_image(encode(pal, "GIF", transparency=1)))
    assert gif[0, 0].tolist() == [255, 255, 255]
    rgb_key = np.asarray(decode_image(encode(Image.new("RGB", (2, 2), (0, 255, 0)), "PNG", transparency=(0, 255, 0))))
    assert rgb_key[0, 0].tolist() == [255, 255, 255]  # single-colour transparency (tRNS) in an RGB PNG


def test_plain_modes_to_rgb():
    assert np.asarray(decode_image(encode(Image.new("L", (2, 2), 77), "PNG")))[0, 0].tolist() == [77] * 3
    one = Image.new("1", (2, 2), 1)
    assert np.asarray(decode_image(encode(one, "PNG"))).min() == 255
    assert np.asarray(decode_image(encode(one, "BMP"))).min() == 255
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    for fmt in ("JPEG", "TIFF"):
        px = np.asarray(decode_image(encode(cmyk, fmt)))[0, 0].astype(int)
        assert px[0] > 240 and px[1] < 15 and px[2] < 15
    pal = Image.new("P", (2, 2), 0)
    pal.putpalette([12, 34, 56] + [0] * 765)
    assert np.asarray(decode_image(encode(pal, "PNG")))[0, 0].tolist() == [12, 34, 56]


def test_16_bit_greyscale_scaled_not_clamped():
    values = np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)
    expect = [0, 0, 1, 128, 255]
    for fmt in ("PNG", "TIFF"):
        data = encode(Image.fromarray(values), fmt)
        assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
        assert np.asarray(decode_image(data))[0, :, 0].tolist() == expect
    as_i32 = encode(Image.fromarray(values.astype(np.int32)), "TIFF")  # mode "I" holding 16-bit samples
    assert np.asarray(decode_image(as_i32))[0, :, 0].tolist() == expect


def test_float_greyscale():
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert np.asarray(decode_image(encode(f, "TIFF")))[0, :, 0].tolist() == [0, 128, 255]


def refusal(data, name="photo.png", **limits) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, name, **limits)
    assert info.value.name == name and str(info.value).startswith(f"{name}: ")
    return str(info.value)


def test_zero_bytes(tmp_path):
    assert "empty file (0 bytes)" in refusal(b"")
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty file" in refusal(tmp_path / "empty.jpg", "empty.jpg")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF"])
def test_truncated(fmt):
    data = encode(noise((64, 64)), fmt)
    message = refusal(data[: len(data) // 2], f"cut.{fmt.lower()}")
    assert "truncated or corrupt" in message and "re-download" in message


def test_not_an_image_with_image_extension():
    assert "not an image (unrecognised content)" in refusal(b"hello, I am text", "notes.jpg")
    assert "PDF document" in refusal(b"%PDF-1.4\n%...", "scan.png")
    assert "SVG" in refusal(b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "logo.png")
    assert "save it as PNG or JPEG" in refusal(b"\x00" * 64, "zeros.webp")


def test_unsupported_formats():
    assert "ICO images are not supported" in refusal(encode(Image.new("RGB", (16, 16)), "ICO"), "icon.png")
    assert "PPM images are not supported" in refusal(encode(Image.new("RGB", (4, 4)), "PPM"), "x.ppm")


def test_decompression_bomb_header():
    message = refusal(png_header_only(100_000, 100_000), "bomb.png")
    assert "decompression bomb" in message and "downscale" in message


def test_decompression_bomb_pillow_limit(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    warn_zone = encode(Image.new("RGB", (12, 10)), "PNG")  # 120 px: Pillow only warns; we refuse
    error_zone = encode(Image.new("RGB", (30, 30)), "PNG")  # 900 px: Pillow raises
    assert "decompression bomb" in refusal(warn_zone, "w.png")
    assert "decompression bomb" in refusal(error_zone, "e.png")
    assert Image.MAX_IMAGE_PIXELS == 100  # never disabled by the decoder
    assert decode_image(encode(Image.new("RGB", (10, 10)), "PNG")).size == (10, 10)


def test_configured_limits(tmp_path):
    data = encode(Image.new("RGB", (100, 50)), "PNG")
    assert "100x50 (5,000 pixels), above the limit of 4,999 pixels; downscale" in refusal(data, max_pixels=4999)
    assert decode_image(data, max_pixels=5000).size == (100, 50)
    message = refusal(data, max_bytes=len(data) - 1)
    assert f"above the {len(data) - 1:,} bytes limit" in message and "recompress" in message
    path = tmp_path / "big.png"
    path.write_bytes(data)
    assert "above the 10 bytes limit" in refusal(path, "big.png", max_bytes=10)
    assert "25.0 MB limit" in refusal(b"\x00" * (DEFAULT_MAX_BYTES + 1))


def test_good_file_after_bad_ones():
    bad = [b"", b"junk", png_header_only(100_000, 100_000), encode(noise(), "JPEG")[:200]]
    for data in bad:
        with pytest.raises(ImageDecodeError):
            decode_image(data, "bad.png")
        assert decode_image(GOOD, "good.png").size == (5, 4)


def test_decode_many_keeps_going():
    items = [("a.png", GOOD), ("b.png", b""), ("c.jpg", b"not an image"), ("d.png", GOOD)]
    results = decode_many(items)
    assert [r.name for r in results] == ["a.png", "b.png", "c.jpg", "d.png"]
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].image is None and "empty file" in str(results[1].error)
    assert results[2].error.name == "c.jpg"
    assert results[3].image.size == (5, 4)


def make_folder(root: Path, layout: dict[str, list[str]]) -> None:
    for folder, files in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in files:
            (root / folder / name).write_bytes(GOOD)


def test_scan_folder_maps_classes_and_skips_bad_files(tmp_path):
    make_folder(tmp_path, {"square": ["1.png", "2.png"], "circle": ["1.png"], "golden_retriever": ["x.png"]})
    (tmp_path / "circle" / "broken.jpg").write_bytes(b"")
    (tmp_path / "circle" / "cut.png").write_bytes(encode(noise((64, 64)), "PNG")[:300])
    (tmp_path / "square" / "notes.txt").write_text("hi")
    (tmp_path / "square" / ".DS_Store").write_bytes(b"\x00")
    scan = scan_image_folder(tmp_path, ["circle", "square", "golden retriever", "unused"])
    assert sorted((p.name, i) for p, i in scan.samples) == [
        ("1.png", 0), ("1.png", 1), ("2.png", 1), ("cut.png", 0), ("x.png", 2)]
    assert scan.class_indices == [0, 1, 2]
    reasons = {p.name: r for p, r in scan.skipped}
    assert set(reasons) == {"broken.jpg", "notes.txt"} and "empty file" in reasons["broken.jpg"]
    decoded = list(scan.decode())  # truncated data is only visible on a full decode
    assert len(decoded) == 4 and all(img.mode == "RGB" for _, img, _ in decoded)
    assert {p.name for p, _ in scan.skipped} == {"broken.jpg", "notes.txt", "cut.png"}


def test_scan_folder_with_mapping_and_without_classnames(tmp_path):
    make_folder(tmp_path, {"n001": ["a.png"], "n002": ["b.png"]})
    scan = scan_image_folder(tmp_path, ["dog", "cat"], mapping={"n001": "cat", "n002": "dog"})
    assert sorted((p.name, i) for p, i in scan.samples) == [("a.png", 1), ("b.png", 0)]
    plain = scan_image_folder(tmp_path)
    assert plain.classnames == ["n001", "n002"] and sorted(i for _, i in plain.samples) == [0, 1]


def test_scan_folder_unknown_class_named(tmp_path):
    make_folder(tmp_path, {"circle": ["a.png"], "triangle": ["b.png"]})
    with pytest.raises(ImageFolderError, match=r"'triangle'.*mapping file"):
        scan_image_folder(tmp_path, ["circle", "square"])
    with pytest.raises(ImageFolderError, match=r"'triangle -> hexagon'"):
        scan_image_folder(tmp_path, ["circle", "square"], mapping={"triangle": "hexagon"})


def test_scan_folder_empty_class_named(tmp_path):
    make_folder(tmp_path, {"circle": ["a.png"], "square": []})
    (tmp_path / "square" / "readme.txt").write_text("nothing here")
    with pytest.raises(ImageFolderError, match=r"'square' contain no images"):
        scan_image_folder(tmp_path, ["circle", "square"])


def test_scan_folder_bad_root(tmp_path):
    with pytest.raises(ImageFolderError, match="not found"):
        scan_image_folder(tmp_path / "missing")
    with pytest.raises(ImageFolderError, match="no class folders"):
        scan_image_folder(tmp_path)
