"""The benchmark's subjects: open_clip models with random weights, the demo (or a same-cost stand-in), JPEG folders."""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from wiseft_explorer.core import ImageClassifier
from wiseft_explorer.experiment import DEFAULT_EXPERIMENT, DEMO_ASSETS, Experiment, load_experiment

# Benchmark-only architectures (random weights): a small ViT stands in for ViT-B/32 in --tiny mode, and a tiny
# ResNet for the demo model in --tiny mode (the demo's own config is used when only its checkpoints are missing).
_TINY_VIT = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
_TINY_RN = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
_DEMO_CONFIG = DEMO_ASSETS / "wiseft-demo-rn.json"
CLASSNAMES = ["circle", "square", "triangle", "star", "ring", "cross", "stripe", "dot", "wave", "grid"]
# The streaming benchmark's model: 224 px like ViT-B/32, so images are decoded, resized and cropped exactly as for
# a real CLIP model, but 4 layers of width 256 instead of 12 of 768 (4 M image-tower parameters, about 5 core-ms
# per image, some 20x cheaper), so that a 20,000-image sweep takes under two minutes on 2 cores instead of about
# a quarter of an hour. A cheaper forward makes decoding a larger share of the work: a conservative throughput.
STREAM_VIT = {"embed_dim": 128, "vision_cfg": {"image_size": 224, "layers": 4, "width": 256, "patch_size": 32},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def _register(root: Path, name: str, config: dict) -> Path:
    """Write and register an open_clip model config (open_clip names a config by its file stem)."""
    import open_clip

    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{name}.json"
    path.write_text(json.dumps(config))
    open_clip.add_model_config(path)
    return path


def _perturbed(model: ImageClassifier, seed: int, scale: float = 0.05) -> ImageClassifier:
    """A stand-in for fine-tuning: every float weight moved by a little noise (BN variances kept positive)."""
    out = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in out.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and tensor.numel() > 1:
                tensor.add_(torch.randn(tensor.shape, generator=gen) * float(tensor.std()) * scale)
                if "running_var" in name:
                    tensor.abs_()
    return out.eval().requires_grad_(False)


def vit_pair(tiny: bool, root: Path, device: torch.device) -> tuple[ImageClassifier, ImageClassifier, int]:
    """Zero-shot-like and fine-tuned-like classifiers on open_clip ViT-B-32 with random weights (1000 classes)."""
    import open_clip

    torch.manual_seed(0)
    name = "ViT-B-32"
    if tiny:
        name = "wiseft-bench-vit"
        _register(root, name, _TINY_VIT)
    clip = open_clip.create_model(name)  # no pretrained tag: random weights, nothing downloaded
    head = torch.nn.Linear(clip.visual.output_dim, 1000)
    zeroshot = ImageClassifier(clip.visual, head).eval().requires_grad_(False)
    del clip  # the text tower is not needed
    finetuned = _perturbed(zeroshot, seed=1)
    return zeroshot.to(device), finetuned.to(device), zeroshot.visual.image_size[0]


def write_models(root: Path, name: str, config: dict, classnames: list[str], templates: list[str],
                 seed: int = 0) -> tuple[Path, Path, Path]:
    """Config, a random zero-shot CLIP and a perturbed "fine-tuned" classifier on disk: (config, zeroshot, finetuned)."""
    import open_clip

    from wiseft_explorer.core import LoadedClip, build_zeroshot, classifier_metadata, save_checkpoint

    config_path = _register(root, name, config)
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    zeroshot = save_checkpoint(root / "zeroshot.safetensors", model.state_dict())
    clip = LoadedClip(model.eval(), preprocess, open_clip.get_tokenizer(name), name)
    tuned = _perturbed(build_zeroshot(clip, classnames, templates), seed=seed + 2)
    finetuned = save_checkpoint(root / "finetuned.safetensors", tuned.state_dict(),
                                classifier_metadata(clip, classnames, recipe={"kind": "benchmark stand-in"}, seed=0))
    return config_path, zeroshot, finetuned


def standin_experiment(root: Path, tiny: bool) -> Path:
    """A demo-like experiment (world sets, 10 classes, 32 px) with random weights, for when the demo is missing."""
    from wiseft_explorer.world import CLASSES, DEMO_TEMPLATES

    name = "wiseft-bench-rn"
    config = _TINY_RN if tiny or not _DEMO_CONFIG.is_file() else json.loads(_DEMO_CONFIG.read_text())
    config_path, _, _ = write_models(root, name, config, list(CLASSES), list(DEMO_TEMPLATES))
    limit = "limit = 16\n" if tiny else ""  # the gallery needs 16 images
    sets = [("[id]", "ID", "id-test"), ("[id_val]", "ID-val", "id-val")]
    sets += [("[[shifts]]", s.capitalize(), s) for s in ("resample", "sketch", "cartoon", "unusual", "corrupt")]
    tables = [f'{table}\nname = "{n}"\nsource = "world:{s}"\n{limit}' for table, n, s in sets]
    toml = root / "bench.toml"
    toml.write_text(f'name = "benchmark stand-in"\ndevice = "auto"\nbatch_size = 256\n\n[zeroshot]\n'
                    f'model = "{name}"\npretrained = "zeroshot.safetensors"\nconfig = "{config_path.name}"\n\n'
                    f'[finetuned]\ncheckpoint = "finetuned.safetensors"\n\n[classes]\n'
                    f'names = {json.dumps(list(CLASSES))}\ntemplates = {json.dumps(list(DEMO_TEMPLATES))}\n\n'
                    + "\n".join(tables))
    return toml


def demo_experiment(root: Path, tiny: bool, device: str | None) -> tuple[Experiment, str]:
    """The built-in demo experiment if its files exist (never in --tiny mode), else a stand-in; with a note."""
    note, why = "the built-in demo", "--tiny"
    exp = None
    if not tiny:
        try:
            exp = load_experiment(DEFAULT_EXPERIMENT)
        except (OSError, ValueError) as err:  # missing files or an unreadable TOML: measure the stand-in
            why = f"demo not available: {str(err)[:160]}"
    if exp is None:
        exp = load_experiment(standin_experiment(root / "standin", tiny))
        note = f"stand-in: random weights, {'tiny' if tiny else 'demo'} architecture, world sets ({why})"
    return dataclasses.replace(exp, device=device or exp.device), note


def stream_vit_config(tiny: bool) -> tuple[str, dict]:
    """Name and open_clip config of the streaming benchmark's model (the 32-px test ViT in --tiny mode)."""
    return ("wiseft-bench-vit32", _TINY_VIT) if tiny else ("wiseft-bench-vit224", STREAM_VIT)


def picture(index: int, side: tuple[int, int]) -> bytes:
    """A photo-like JPEG, deterministic in its index: smooth colour field, a few shapes, fine grain."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(index)
    width, height = side
    image = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(side, Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (int(v) for v in rng.integers(width // 25 + 1, width * 2 // 5 + 2, 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x, y, x + w, y + h), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    # Sensor-like grain is what makes real photos 30-60 KB at this size; flat synthetic images would be ~10 KB
    # and decode faster than photos do.
    grain = rng.integers(-7, 8, (height, width, 1), dtype=np.int16)
    pixels = np.clip(np.asarray(image, dtype=np.int16) + grain, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _write_range(folder: str, start: int, stop: int, side: tuple[int, int]) -> int:
    """Write images start..stop-1 (class = index mod 10); returns the bytes written."""
    written = 0
    for index in range(start, stop):
        data = picture(index, side)
        (Path(folder) / CLASSNAMES[index % len(CLASSNAMES)] / f"{index:06d}.jpg").write_bytes(data)
        written += len(data)
    return written


def jpeg_folders(root: Path, n_big: int, n_small: int, side: tuple[int, int]) -> tuple[Path, Path, dict]:
    """A generated JPEG folder of n_big images (10 classes), one of its first n_small (hard links), and stats."""
    from wiseft_explorer.data import worker_context

    big, small = root / f"jpeg-{n_big}", root / f"jpeg-{n_small}"
    for folder in (big, small):
        for name in CLASSNAMES:
            (folder / name).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    chunks = [(i, min(i + 500, n_big)) for i in range(0, n_big, 500)]
    if n_big >= 2000:  # two processes halve the minute that 20,000 JPEGs take; small runs stay in-process
        with ProcessPoolExecutor(2, mp_context=worker_context()) as pool:
            written = sum(pool.map(_write_range, *zip(*[(str(big), a, b, side) for a, b in chunks],
                                                       strict=True)))
    else:
        written = sum(_write_range(str(big), a, b, side) for a, b in chunks)
    for index in range(n_small):
        name = f"{CLASSNAMES[index % len(CLASSNAMES)]}/{index:06d}.jpg"
        os.link(big / name, small / name)
    return big, small, {"images": n_big, "side": list(side), "mean_kb": written / n_big / 1024,
                        "seconds": time.perf_counter() - start}
