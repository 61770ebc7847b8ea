"""A tiny, randomly initialised open_clip experiment built on the fly (nothing downloaded), shared by tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import open_clip
import torch

from wiseft_explorer.core import (
    ImageClassifier,
    build_zeroshot,
    classifier_metadata,
    load_clip,
    save_checkpoint,
)
from wiseft_explorer.demo import (  # the tiny model and pictures of `make-example`
    CLASSES,
    TEMPLATES,
    TINY_CONFIG,
    TINY_NAME,
    picture,
    write_config,
    write_folder,
)
from wiseft_explorer.experiment import ModelSpec

__all__ = ["CLASSES", "TEMPLATES", "TINY_CONFIG", "TINY_NAME", "TinyExperiment", "fake_finetune", "make_tiny", "picture",
           "write_config", "write_folder"]


@dataclass
class TinyExperiment:
    """Paths of a generated experiment."""

    root: Path
    toml: Path
    config: Path
    zeroshot: Path
    finetuned: Path
    id_dir: Path
    shift_dir: Path


def make_tiny(root: Path, seed: int = 0, n_id: int = 6, n_shift: int = 5) -> TinyExperiment:
    """Build config, a random zero-shot CLIP, a perturbed 'fine-tuned' classifier, two folders and a TOML."""
    root.mkdir(parents=True, exist_ok=True)
    config = write_config(root)
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_NAME)
    zs_path = save_checkpoint(root / "zeroshot.safetensors", model.state_dict())
    clip = load_clip(ModelSpec(TINY_NAME, str(zs_path), config))
    zs = build_zeroshot(clip, CLASSES, TEMPLATES)
    ft = fake_finetune(zs, seed)
    ft_path = save_checkpoint(root / "finetuned.safetensors", ft.state_dict(),
                              classifier_metadata(clip, CLASSES, recipe={"kind": "test-perturbation"}, seed=seed))
    id_dir = write_folder(root / "id", n_id, seed + 1)
    shift_dir = write_folder(root / "shift", n_shift, seed + 2, shifted=True, classes=CLASSES[:2])
    toml = root / "tiny.toml"
    toml.write_text(f"""name = "tiny test experiment"
device = "cpu"
batch_size = 8
cache_dir = "cache"

[zeroshot]
model = "{TINY_NAME}"
pretrained = "zeroshot.safetensors"
config = "{config.name}"

[finetuned]
checkpoint = "finetuned.safetensors"

[classes]
names = {json.dumps(CLASSES)}
templates = {json.dumps(TEMPLATES)}

[id]
name = "ID"
source = "id"

[[shifts]]
name = "Dark"
source = "shift"
classes = {json.dumps(CLASSES[:2])}

[[shifts]]
name = "Same"
source = "id"
""")
    return TinyExperiment(root, toml, config, zs_path, ft_path, id_dir, shift_dir)


def fake_finetune(zs: ImageClassifier, seed: int) -> ImageClassifier:
    """A deterministic perturbation of every float weight (and BN statistic): a stand-in for fine-tuning."""
    import copy

    ft = copy.deepcopy(zs)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, tensor in ft.state_dict(keep_vars=True).items():
            if tensor.is_floating_point():
                noise = torch.randn(tensor.shape, generator=gen) * (tensor.std() if tensor.numel() > 1 else 0.1)
                tensor.add_(0.3 * noise)
                if "running_var" in name:
                    tensor.abs_()
    return ft
