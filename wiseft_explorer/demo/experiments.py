"""The built-in experiment files build-demo writes: which endpoints each shows, with paths relative to the file."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from ..store.atomic import atomic_write_text
from ..world.captions import DEMO_TEMPLATES
from ..world.render import CLASSES
from ..world.sets import SPECS

DEMO_MODEL = "wiseft-demo-rn"
SHIFT_TITLES = {
    "resample": "Re-sample (V2-like)", "sketch": "Sketch", "cartoon": "Cartoon (R-like)",
    "unusual": "Unusual (ObjectNet-like)", "corrupt": "Corrupted (C-like)",
}


def experiment_toml(title: str, out_dir: Path, toml_dir: Path, assets: Mapping[str, str], checkpoints: dict[str, str],
                    limit: int | None) -> str:
    """An experiment file for the demo assets (paths relative to the TOML file's folder); `assets` names the model
    config and zero-shot files, `checkpoints` maps each fine-tuned endpoint's name to its asset (several become
    [[finetuned]] tables)."""

    def rel(name: str) -> str:
        return Path(os.path.relpath(out_dir / name, toml_dir)).as_posix()

    limit_line = f"limit = {limit}\n" if limit else ""
    lines = [
        f'name = "{title}"', 'device = "auto"', 'precision = "fp32"', 'head_policy = "auto"',
        "batch_size = 256", "", "[zeroshot]", f'model = "{DEMO_MODEL}"', f'pretrained = "{rel(assets["zeroshot"])}"',
        f'config = "{rel(assets["config"])}"', "",
        *(line for name, asset in checkpoints.items() for line in
          ("[[finetuned]]" if len(checkpoints) > 1 else "[finetuned]", f'name = "{name}"',
           f'checkpoint = "{rel(asset)}"', "")),
        "[classes]", f"names = {json.dumps(list(CLASSES))}", f"templates = {json.dumps(list(DEMO_TEMPLATES))}", "",
        "[id]", 'name = "ID"', 'source = "world:id-test"', limit_line, "[id_val]", 'name = "ID-val"',
        'source = "world:id-val"', limit_line,
    ]
    for name, shift_title in SHIFT_TITLES.items():
        lines += ["[[shifts]]", f'name = "{shift_title}"', f'source = "world:{name}"',
                  f"# {SPECS[name].description}", limit_line]
    return "\n".join(lines).replace("\n\n\n", "\n\n").rstrip() + "\n"


def write_experiments(out_dir: Path, experiments_dir: Path, assets: Mapping[str, str],
                      groups: Mapping[str, tuple[str, dict[str, str]]], limit: int | None) -> dict[str, Path]:
    """Write one experiment file per group: stem -> (title, endpoint name -> asset); returns stem -> path."""
    written = {}
    for stem, (title, checkpoints) in groups.items():
        path = experiments_dir / f"{stem}.toml"
        atomic_write_text(path, experiment_toml(title, out_dir, experiments_dir, assets, checkpoints, limit))
        written[stem] = path
    return written
