"""LP-FT (Kumar et al., ICLR 2022, "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution"): a linear probe first, then end-to-end fine-tuning that starts from the probe's head.

Both stages are this project's own loops, reused as they are: stage 1 is the linear mode (the tower frozen, its
features computed once), stage 2 the end-to-end mode started from stage 1's classifier. Under torchrun each stage
shares its work out as it does alone (stage 1 its feature pass, stage 2 every global batch).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import torch

from ..core.distributed import Group
from ..core.models import ImageClassifier
from .augment import AugmentedImages
from .finetuning import FinetuneResult, ProgressCallback, finetune_end_to_end, finetune_linear
from .loader import LoaderOptions, TrainData, as_dataset
from .recipe import FinetuneConfig

METHOD = "lp-ft"

# Every way this project's LP-FT departs from the LP-FT paper's, recorded in each LP-FT checkpoint's recipe.
DEPARTURES = (
    "stage 1 (the probe) is this project's linear-classifier recipe: AdamW with warmup and cosine decay on features "
    "computed once with the evaluation transform, the head starting from the zero-shot head; the LP-FT paper fits "
    "a logistic-regression probe (L-BFGS, its L2 strength chosen on ID validation data)",
    "stage 2 is this project's end-to-end recipe (the WiSE-FT paper's: AdamW, lr 3e-5, batch 512, 10 epochs by "
    "default) with the settings given; the LP-FT paper chose its fine-tuning settings (optimiser, learning rate) by "
    "sweeps on ID validation data, which are not run here: pass a smaller --lr for a gentler stage 2",
)


def probe_recipe(config: FinetuneConfig, epochs: int | None = None, lr: float | None = None) -> FinetuneConfig:
    """Stage 1's recipe: the run's own settings in the linear mode, with the probe's epochs and lr where given."""
    return dataclasses.replace(config, mode="linear", epochs=config.epochs if epochs is None else epochs,
                               lr=config.lr if lr is None else lr)


def _steps(images: int, batch_size: int) -> int:
    """Optimiser steps of one epoch (the training loader drops a last partial batch when there is more than one)."""
    return images // batch_size if images > batch_size else 1


def _stage_record(stage: str, result: FinetuneResult) -> dict[str, Any]:
    """One stage's recipe as run, and how it went (for the checkpoint's `stages`)."""
    return {"stage": stage, **result.config.to_dict(), "final_loss": result.final_loss,
            "train_accuracy": result.train_accuracy, "seconds": round(result.seconds, 1)}


def finetune_lp_ft(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig | None = None,
                   device: torch.device | str = "cpu", progress: bool = True,
                   callback: ProgressCallback | None = None, loader: LoaderOptions | None = None,
                   group: Group | None = None, *, probe_config: FinetuneConfig | None = None,
                   probe_data: TrainData | None = None) -> FinetuneResult:
    """LP-FT from `classifier` (left unchanged): a linear probe (`probe_config`, default `probe_recipe(config)`),
    then end-to-end fine-tuning (`config`) from the probe's classifier.

    `data` is stage 2's (with augment='train', `augment.training_images(...)`); the probe reads `probe_data`, the
    same images through the evaluation transform (default: `data`, when it is not augmented). `callback` sees the
    two stages as one run of steps. The result's config is stage 2's as run, in mode 'lp-ft'; its `stages` hold both
    stages' recipes as run.
    """
    config = dataclasses.replace(config or FinetuneConfig(), mode="end-to-end")
    probe_config = probe_recipe(config) if probe_config is None else dataclasses.replace(probe_config, mode="linear")
    if probe_data is None:
        if isinstance(data, AugmentedImages):
            raise ValueError("the probe computes its features with the evaluation transform, but `data` is read "
                             "through the training transform: pass probe_data=training.augment.training_images(set, "
                             "preprocess, probe_config) (the evaluation transform) as well")
        probe_data = data
    start = time.perf_counter()
    images = len(as_dataset(data))
    later = config.epochs * _steps(images, config.batch_size)  # stage 2's steps, counted ahead for the callback
    probe_steps = [probe_config.epochs * _steps(images, probe_config.batch_size)]

    def probe_callback(step: int, total: int, loss: float) -> None:
        probe_steps[0] = total  # the probe's own count (images that failed to load are not in it)
        if callback is not None:
            callback(step, total + later, loss)

    def tune_callback(step: int, total: int, loss: float) -> None:
        if callback is not None:
            callback(probe_steps[0] + step, probe_steps[0] + total, loss)

    probe = finetune_linear(classifier, probe_data, probe_config, device, progress, probe_callback, loader, group)
    tuned = finetune_end_to_end(probe.classifier, data, config, device, progress, tune_callback, loader, group)
    return FinetuneResult(tuned.classifier, dataclasses.replace(tuned.config, mode=METHOD), tuned.losses,
                          time.perf_counter() - start, sorted({*probe.skipped, *tuned.skipped}),
                          tuned.train_accuracy,
                          stages=[_stage_record("linear probe", probe), _stage_record("fine-tune", tuned)],
                          departures=list(DEPARTURES))
