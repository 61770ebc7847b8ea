"""The benchmark's subjects: open_clip ViT-B/32 with random weights, and the demo (or a same-cost stand-in)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import torch

from .experiment import DEFAULT_EXPERIMENT, REPO_ROOT, Experiment, load_experiment
from .models import ImageClassifier

# Benchmark-only architectures (random weights): a small ViT stands in for ViT-B/32 in --tiny mode, and a tiny
# ResNet for the demo model in --tiny mode (the demo's own config is used when only its checkpoints are missing).
_TINY_VIT = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
_TINY_RN = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
_DEMO_CONFIG = REPO_ROOT / "assets" / "demo" / "wiseft-demo-rn.json"


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


def standin_experiment(root: Path, tiny: bool) -> Path:
    """A demo-like experiment (world sets, 10 classes, 32 px) with random weights, for when the demo is missing."""
    import open_clip

    from .checkpoints import save_checkpoint
    from .models import LoadedClip, build_zeroshot, classifier_metadata
    from .world import CLASSES, DEMO_TEMPLATES

    name = "wiseft-bench-rn"
    config = _TINY_RN if tiny or not _DEMO_CONFIG.is_file() else json.loads(_DEMO_CONFIG.read_text())
    config_path = _register(root, name, config)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(name)
    save_checkpoint(root / "zeroshot.safetensors", model.state_dict())
    clip = LoadedClip(model.eval(), preprocess, open_clip.get_tokenizer(name), name)
    finetuned = _perturbed(build_zeroshot(clip, CLASSES, DEMO_TEMPLATES), seed=2)
    save_checkpoint(root / "finetuned.safetensors", finetuned.state_dict(),
                    classifier_metadata(clip, CLASSES, recipe={"kind": "benchmark stand-in"}, seed=0))
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
    note, why = "experiments/demo.toml", "--tiny"
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
