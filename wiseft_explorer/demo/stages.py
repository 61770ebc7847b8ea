"""build-demo's fine-tuning stages: each trains one endpoint from the zero-shot classifier and writes it.

A stage records what it was asked to do (`demo_stage`: method, requested recipe, seed, training images and the
zero-shot tower's digest) in its checkpoint, so `build-demo --reuse` keeps an endpoint whose record matches and
trains only what is new or changed: adding an endpoint does not retrain, and silently shift, the others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.checkpoints import CheckpointError, load_checkpoint
from ..core.heads import zero_shot_head
from ..core.lineage import visual_digest
from ..core.models import ImageClassifier, LoadedClip
from ..training.finetuning import FinetuneResult, finetune_end_to_end, finetune_linear, save_finetuned
from ..training.flyp import FlypResult, finetune_flyp, save_flyp
from ..training.lpft import finetune_lp_ft
from ..training.recipe import FinetuneConfig

TrainData = tuple[torch.Tensor, torch.Tensor]
Runner = Callable[..., FinetuneResult]


@dataclass(frozen=True)
class StageModels:
    """What every stage starts from: the zero-shot classifier, the CLIP it came from (FLYP trains both of its
    towers), and the class names and prompt templates of the zero-shot head."""

    zeroshot: ImageClassifier
    clip: LoadedClip
    classnames: list[str]
    templates: list[str]


@dataclass(frozen=True)
class Stage:
    """One fine-tuned endpoint of the demo: its key, asset file, name in the experiment files and recipe.

    The recipe's `seed` is an offset added to the demo's seed (0 for the main endpoints), so ingredients of a soup
    differ by seed the way the soups paper's do. `probe` is LP-FT's first stage (its linear probe)."""

    key: str
    asset: str
    title: str
    config: FinetuneConfig
    probe: FinetuneConfig | None = None

    def train(self, models: StageModels, data: TrainData, config: FinetuneConfig, progress: bool) -> FinetuneResult:
        """Fine-tune with `config` (the stage's recipe with its seed resolved)."""
        if config.mode == "flyp":
            return finetune_flyp(models.clip.model, models.clip.tokenizer, models.classnames, models.templates, data,
                                 config, progress=progress)
        if config.mode == "lp-ft":
            probe = replace(self.probe or config, mode="linear", seed=config.seed)
            return finetune_lp_ft(models.zeroshot, data, config, progress=progress, probe_config=probe)
        runner: Runner = {"end-to-end": finetune_end_to_end, "linear": finetune_linear}[config.mode]
        return runner(models.zeroshot, data, config, progress=progress)


def fp16_roundtrip(module: nn.Module, dtype: torch.dtype) -> None:
    """Round weights to the storage precision, so what is fine-tuned and measured is exactly what ships."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype).float())


def stage_record(stage: Stage, seed: int, train_size: int, zeroshot: ImageClassifier) -> dict[str, Any]:
    """What a stage is asked to do, as JSON values (compared on reuse)."""
    recipe = {**stage.config.to_dict(), "seed": seed + stage.config.seed}
    probe = {"probe": stage.probe.to_dict()} if stage.probe is not None else {}
    return json.loads(json.dumps({"key": stage.key, "recipe": recipe, "train_size": train_size, **probe,
                                  "zeroshot_digest": visual_digest(zeroshot.visual.state_dict())}))


def reusable(path: Path, record: dict[str, Any]) -> bool:
    """Whether `path` is an endpoint this stage already wrote with the same record."""
    if not path.is_file():
        return False
    try:
        return load_checkpoint(path)[1].get("demo_stage") == record
    except CheckpointError:
        return False


def _save(path: Path, result: FinetuneResult, models: StageModels, metadata: dict[str, Any], dtype: torch.dtype) -> Path:
    """Round to the storage precision and write; a FLYP endpoint's head is rebuilt from its rounded text tower, so
    the head it ships is the one its shipped text tower gives (as θ_α's heads are built)."""
    if isinstance(result, FlypResult) and result.clip_model is not None:
        fp16_roundtrip(result.clip_model, dtype)
        result.classifier.head = zero_shot_head(result.clip_model, models.clip.tokenizer, models.classnames,
                                                models.templates)
        return save_flyp(path, result, metadata, dtype=dtype)
    fp16_roundtrip(result.classifier, dtype)
    return save_finetuned(path, result, metadata, dtype=dtype)


def run_stage(stage: Stage, models: StageModels, data: TrainData, out_dir: Path, metadata: dict[str, Any],
              record: dict[str, Any], dtype: torch.dtype, reuse: bool, progress: bool) -> tuple[Path, float | None]:
    """Train and write one endpoint (or keep it, with `reuse`, when its record matches); returns its path and the
    seconds spent (None when kept)."""
    path = out_dir / stage.asset
    if reuse and reusable(path, record):
        return path, None
    start = time.perf_counter()
    config = FinetuneConfig(**record["recipe"] | {"betas": tuple(record["recipe"]["betas"])})
    result = stage.train(models, data, config, progress)
    _save(path, result, models, {**metadata, "stage": stage.key, "demo_stage": record}, dtype)
    return path, time.perf_counter() - start
