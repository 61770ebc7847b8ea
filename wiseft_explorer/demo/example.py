"""`make-example DIR`: a tiny random open_clip model, class folders of images and an experiment file, laid out as
the README's own-models walk lays out a project, so that the walk can be tried offline without real weights.

The tests' tiny experiment is built from the same model config and pictures.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

TINY_NAME = "wiseft-tiny-rn"
# A ModifiedResNet of four one-block stages at 32 px and a one-layer text transformer: builds and runs in well
# under a second on a CPU.
TINY_CONFIG: dict = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ["red square", "green circle", "blue stripes"]
TEMPLATES = ["a photo of a {}.", "a picture of a {}."]
COLOURS = {"red square": (220, 40, 40), "green circle": (40, 200, 60), "blue stripes": (40, 60, 220)}

EXPERIMENT = "experiments/tiny.toml"  # inside DIR, where the app's sidebar lists it when started from DIR
WEIGHTS = "checkpoints/tiny-clip.safetensors"
FINETUNED = "checkpoints/finetuned.safetensors"
# folder under data/ -> (images per class, shifted: darker and noisier)
SETS = {"train": (8, False), "test": (6, False), "heldout": (4, False), "dark": (6, True)}
# The fine-tuning the printed commands run: a random model needs a larger step than the paper's 3e-5 to move.
FINETUNE_FLAGS = "--epochs 10 --lr 1e-2 --batch-size 8 --workers 0"


def picture(cls: str, rng: np.random.Generator, size: int = 32, shifted: bool = False) -> Image.Image:
    """A coloured image of a class (shifted: darker, noisier)."""
    base = np.array(COLOURS[cls], dtype=np.float32) * (0.6 if shifted else 1.0)
    arr = base + rng.normal(0, 40 if shifted else 15, (size, size, 3))
    if cls == "blue stripes":
        arr[::4] *= 0.3
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_folder(root: Path, n_per_class: int, seed: int, shifted: bool = False, classes=CLASSES) -> Path:
    """ImageFolder layout: root/<class>/<i>.png."""
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            picture(cls, rng, shifted=shifted).save(root / cls / f"{i}.png")
    return root


def write_config(folder: Path) -> Path:
    """The tiny model's open_clip config, named after the model (open_clip registers configs by file stem)."""
    path = folder / f"{TINY_NAME}.json"
    path.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    return path


def _experiment_text() -> str:
    sets = {name: f"../data/{name}" for name in SETS}
    return f"""# A tiny random CLIP and coloured images, written by `python -m wiseft_explorer make-example`, to try the
# own-models walk offline. Relative paths in this file start at this file's folder (hence ../); on the command line
# they start at the folder you run from (the README's "Where relative paths start").
name = "tiny example"
device = "cpu"      # a model this small runs fastest on the CPU
workers = 0         # a few dozen small images: decode them in the main process

[zeroshot]
model = "{TINY_NAME}"
pretrained = "../{WEIGHTS}"    # random weights: zero-shot is about chance
config = "../checkpoints/{TINY_NAME}.json"        # a custom architecture's open_clip config

[finetuned]
checkpoint = "../{FINETUNED}"  # written by `finetune`

[classes]
names = {json.dumps(CLASSES)}
templates = {json.dumps(TEMPLATES)}

[id]
name = "ID test"
source = "{sets['test']}"

[id_val]
source = "{sets['heldout']}"   # alpha is chosen here, without looking at the shift

[[shifts]]
name = "Dark"
source = "{sets['dark']}"      # the same classes, darker and noisier
"""


def next_commands(folder: str) -> list[str]:
    """What to run after `make-example FOLDER`: go there, fine-tune, sweep, open the app on the experiment."""
    return [f"cd {shlex.quote(folder)}",
            f"python -m wiseft_explorer finetune --experiment {EXPERIMENT} --train data/train --out {FINETUNED} "
            f"{FINETUNE_FLAGS}",
            f"python -m wiseft_explorer sweep --experiment {EXPERIMENT}",
            f"WISEFT_EXPERIMENT={EXPERIMENT} python -m wiseft_explorer app"]


def write_example(root: Path, seed: int = 0) -> Path:
    """Write the tiny model, its config, the image folders and the experiment under `root`; returns the TOML's path.

    Refuses a folder that already holds files: nothing of the user's is overwritten.
    """
    import open_clip
    import torch

    from ..core.checkpoints import save_checkpoint
    from ..store.atomic import atomic_write_text

    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} already exists and is not an empty folder; name a new folder for the example")
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    config = write_config(root / "checkpoints")
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    logging.disable(logging.WARNING)  # open_clip warns that a model built without weights is random: it is meant to be
    try:
        model = open_clip.create_model(TINY_NAME)
    finally:
        logging.disable(logging.NOTSET)
    save_checkpoint(root / WEIGHTS, model.state_dict(), {"made_by": "wiseft_explorer make-example", "seed": seed})
    for i, (name, (count, shifted)) in enumerate(SETS.items()):
        write_folder(root / "data" / name, count, seed + 1 + i, shifted=shifted)
    return atomic_write_text(root / EXPERIMENT, _experiment_text())
