"""Preset sets read their files as the benchmark's loader does (torchvision's `pil_loader`): no upload limits, no
EXIF rotation, RGB conversion as Pillow does it, and an unreadable file fails the sweep naming it, unless
`skip_unreadable = true` leaves it out, counted and shown."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_datasets import fake_imagenet_layout, png_bytes
from PIL import Image
from test_presets import IMAGENET, _preset_experiment, _set
from torchvision import transforms as T
from torchvision.datasets.folder import pil_loader

from wiseft_explorer.data import DataWarning, check_experiment, decode_image, load_batch, load_eval_set
from wiseft_explorer.experiment import ExperimentError, parse_experiment


def _r_layout(tmp_path: Path) -> tuple[Path, Path]:
    """A fake ImageNet-R and the file of its first class that a test replaces."""
    root = fake_imagenet_layout(tmp_path / "r", "imagenet-r")
    return root, sorted(root.iterdir())[0] / "0.JPEG"


def _exif_rotated_jpeg() -> bytes:
    arr = np.zeros((8, 16, 3), dtype=np.uint8)
    arr[:, :8] = (250, 20, 20)  # left half red: rotated by EXIF it would end up on top or bottom
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def _transparent_png() -> bytes:
    arr = np.zeros((8, 8, 4), dtype=np.uint8)
    arr[..., :3] = (10, 200, 30)
    arr[:4, :, 3] = 0  # top half fully transparent: composited on white it would turn white
    arr[4:, :, 3] = 255
    buf = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("make", [_exif_rotated_jpeg, _transparent_png])
def test_a_preset_reads_pixels_as_torchvisions_pil_loader(tmp_path, make):
    root, path = _r_layout(tmp_path)
    path.write_bytes(make())
    ev = load_eval_set(_set("imagenet-r", root), IMAGENET)
    index = ev.paths.index(str(path))
    images, loaded, failed = load_batch(ev, [index], T.ToTensor())
    assert loaded == [index] and not failed
    assert torch.equal(images[0], T.ToTensor()(pil_loader(path)))  # the benchmark's own loader, image for image
    # ... which is not what the upload path makes of the same file (rotated, or composited on white).
    assert not np.array_equal(np.asarray(decode_image(path)), np.asarray(pil_loader(path)))


def test_a_preset_keeps_images_above_the_upload_limits(tmp_path):
    root, path = _r_layout(tmp_path)
    Image.new("1", (7000, 6000)).save(path, format="PNG")  # 42 Mpx (upload limit 40 Mpx), a few kB on disk
    ev = load_eval_set(_set("imagenet-r", root), IMAGENET)
    assert str(path) in ev.paths and len(ev) == 200 and not ev.skipped  # the denominator the benchmark has


def test_an_unreadable_preset_file_fails_naming_it_or_is_counted_when_allowed(tmp_path):
    root, path = _r_layout(tmp_path)
    path.write_bytes(b"not an image at all")
    with pytest.raises(ExperimentError, match=rf"cannot read {path}.*skip_unreadable = true"):
        load_eval_set(_set("imagenet-r", root), IMAGENET)
    with pytest.warns(DataWarning, match="skipped 1 unreadable file"):
        ev = load_eval_set(_set("imagenet-r", root, skip_unreadable=True), IMAGENET)
    assert len(ev) == 199 and [p for p, _ in ev.skipped] == [str(path)]


def test_a_file_that_fails_to_decode_mid_sweep_stops_it_naming_the_file(tiny, tmp_path):
    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep

    root, path = _r_layout(tmp_path)
    path.write_bytes(png_bytes(size=64)[:60])  # the header reads (the scan passes it), the pixels do not
    sets = f'[id]\npreset = "imagenet-r"\nsource = "{root}"\n'
    toml = _preset_experiment(tmp_path, tiny, "imagenet", sets)
    with pytest.raises(ExperimentError, match=rf"cannot read {path}.*skip_unreadable = true"):
        run_sweep(ExperimentRuntime.from_path(toml), [0.0])
    toml.write_text(toml.read_text().replace('source = "', 'skip_unreadable = true\nsource = "'))
    runtime = ExperimentRuntime.from_path(toml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        run_sweep(runtime, [0.0])
    assert [line.split(":")[0] for line in runtime.data_warnings()] == ["ImageNet-R"]  # counted, shown


def test_the_models_page_check_names_an_unreadable_preset_file(tmp_path):
    root, path = _r_layout(tmp_path)
    path.write_bytes(b"junk")
    data = {"zeroshot": {"model": "ViT-B-32"}, "id": {"preset": "imagenet-r", "source": str(root)}}
    (check,) = check_experiment(parse_experiment(data, tmp_path))
    assert check.error is not None and str(path) in check.error
    data["id"]["skip_unreadable"] = True
    (check,) = check_experiment(parse_experiment(data, tmp_path))
    assert check.error is None and check.skipped == 1


def test_preset_switches_are_checked_where_they_are_written(tmp_path):
    root = fake_imagenet_layout(tmp_path / "r", "imagenet-r")
    base = {"classes": {"names": "imagenet"}, "zeroshot": {"model": "ViT-B-32"}}
    for table, message in (({"source": str(tmp_path), "skip_unreadable": True}, "only for a preset set"),
                           ({"source": str(root), "preset": "imagenet-r", "crop_border": True}, "only for preset"),
                           ({"source": str(root), "preset": "imagenet-r", "skip_unreadable": "yes"}, "true or false")):
        with pytest.raises(ExperimentError, match=message):
            parse_experiment({**base, "id": table}, tmp_path)
    exp = parse_experiment({**base, "id": {"source": str(root), "preset": "imagenet-r", "skip_unreadable": True}},
                           tmp_path)
    assert exp.id_set.skip_unreadable and not exp.id_set.crop_border
