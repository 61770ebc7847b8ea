"""Fine-tuning a zero-shot classifier with the paper's recipe: end-to-end (image tower + head) or linear classifier.

Both modes share one optimisation loop; the result is saved as a checkpoint of our format.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..core.checkpoints import save_checkpoint
from ..core.distributed import Group
from ..core.models import ImageClassifier
from .augment import AugmentedImages
from .distributed import data_parallel, gather_features, rank_indices, reduce_training
from .loader import Batch, LoaderOptions, TrainData, as_dataset, loaded_batches, training_loader
from .recipe import FinetuneConfig, as_run, cosine_lr, effective_warmup

FEATURE_BATCH = 256  # images per batch of the linear mode's one feature pass
ProgressCallback = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass
class FinetuneResult:
    """The fine-tuned classifier (a new module) and how training went."""

    classifier: ImageClassifier
    config: FinetuneConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    skipped: list[int] = field(default_factory=list)  # dataset indices of images that could not be loaded
    train_accuracy: float | None = None  # top-1 on the training batches of the last epoch (as the model was then)
    stages: list[dict[str, Any]] = field(default_factory=list)  # a staged method's (LP-FT's) stages, as run
    departures: list[str] = field(default_factory=list)  # how a method departs from its paper's settings

    @property
    def final_loss(self) -> float | None:
        """Mean loss of the last epoch's steps."""
        per_epoch = max(1, len(self.losses) // max(1, self.config.epochs))
        return sum(self.losses[-per_epoch:]) / len(self.losses[-per_epoch:]) if self.losses else None


def set_train_mode(classifier: ImageClassifier, bn: str) -> None:
    """Training mode (the paper's model.train()), except that BatchNorm layers stay in eval mode when bn='frozen'."""
    classifier.train()
    if bn == "frozen":
        # This project's option, not the paper's: the pretrained running statistics are kept (the demo uses it:
        # photo-only batch statistics would overwrite them and hurt every other style).
        for module in classifier.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


# (loss, logits, labels) of one training batch
StepLoss = Callable[[Any], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def _accumulate(batch: Batch, step_loss: StepLoss, micro: int | None,
                no_sync: Callable[[], contextlib.AbstractContextManager]) -> tuple[float, int, int]:
    """Forward and backward of a batch in micro-batches of at most `micro` images (as equal as they go: no small
    last one), each micro-batch's mean loss weighted by its share of the batch, so that the gradients add up to the
    whole batch's; under DDP only the last backward all-reduces. The batch's mean loss and its top-1 counts."""
    size = len(batch[1])
    count = -(-size // (micro or size))
    parts = list(zip(*(tensor.tensor_split(count) for tensor in batch), strict=True))
    total, right = 0.0, 0
    for number, part in enumerate(parts):
        with contextlib.nullcontext() if number == len(parts) - 1 else no_sync():
            try:
                loss, logits, labels = step_loss(part)
                (loss * (len(labels) / size)).backward()
            except torch.cuda.OutOfMemoryError as err:
                raise RuntimeError(f"out of GPU memory on a forward/backward pass of {len(part[1])} images: pass "
                                   f"--micro-batch {max(1, len(part[1]) // 2)} (micro_batch): the gradients then "
                                   "accumulate over the step's images, the same update in less memory") from err
        total += loss.item() * len(labels) / size
        right += int((logits.detach().argmax(-1) == labels).sum())
    return total, right, size


def _optimise(params: list[nn.Parameter], batches: Callable[[], Any], step_loss: StepLoss,
              config: FinetuneConfig, steps_per_epoch: int, desc: str, progress: bool,
              callback: ProgressCallback | None, ranks: Group | None = None,
              no_sync: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
              ) -> tuple[list[float], float | None]:
    """The shared loop: AdamW, warmup + cosine, gradient-norm clipping, micro-batches; every step's loss, and the
    last epoch's top-1."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    warmup = effective_warmup(config, total)
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=1.0)
    step = 0
    for _ in range(config.epochs):
        right = seen = 0
        for batch in batches():
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, config.lr, warmup)
            optimizer.zero_grad(set_to_none=True)
            loss, batch_right, batch_seen = _accumulate(batch, step_loss, config.micro_batch, no_sync)
            right, seen = right + batch_right, seen + batch_seen
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            losses.append(loss)
            step += 1
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{sum(losses[-10:]) / 10:.3f}")
            if callback is not None:
                callback(step, total, losses[-1])
    bar.close()
    losses, right, seen = reduce_training(ranks or Group(), losses, right, seen)
    return losses, (right / seen if losses and seen else None)


def finetune_end_to_end(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig | None = None,
                        device: torch.device | str = "cpu", progress: bool = True,
                        callback: ProgressCallback | None = None,
                        loader: LoaderOptions | None = None, group: Group | None = None) -> FinetuneResult:
    """Fine-tune image tower and head (initialised from `classifier`, which is left unchanged) with cross-entropy.

    With augment='train', `data` must be `augment.training_images(...)` (the training transform, seeded per image);
    in-memory tensors, already preprocessed, train with augment='none'. With a distributed `group` (torchrun), every
    rank trains on its share of each global batch under DistributedDataParallel.
    """
    config = config or FinetuneConfig()
    if config.augment == "train" and not isinstance(data, AugmentedImages):
        raise ValueError("augment='train' reads the images through the model's training transform: pass "
                         "training.augment.training_images(...) as the data, or set augment='none' to train on the "
                         "data as given (in-memory tensors are already preprocessed)")
    start = time.perf_counter()
    model = copy.deepcopy(classifier).to(device).float().requires_grad_(True)
    batches = training_loader(data, config.batch_size, device, loader, seed=config.seed, group=group)
    failed: set[int] = set()
    set_train_mode(model, config.bn)
    net = data_parallel(model, group or Group())

    epochs = itertools.count()

    def epoch_batches() -> Any:
        if isinstance(data, AugmentedImages):  # this epoch's crops (set before the pass starts its workers)
            data.epoch = next(epochs)
        return loaded_batches(batches, failed)

    def step_loss(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits, labels = net(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True)
        return F.cross_entropy(logits, labels), logits, labels

    losses, accuracy = _optimise(list(model.parameters()), epoch_batches, step_loss, config, len(batches),
                                 "fine-tune (end-to-end)", progress, callback, group,
                                 getattr(net, "no_sync", contextlib.nullcontext))
    if not losses and failed:
        raise ValueError("no training image could be loaded")
    model.eval().requires_grad_(False)
    return FinetuneResult(model, as_run(config, "end-to-end", len(batches)), losses, time.perf_counter() - start,
                          sorted(failed), accuracy)


@torch.no_grad()
def image_features(classifier: ImageClassifier, data: TrainData, device: torch.device | str = "cpu",
                   batch_size: int = FEATURE_BATCH, loader: LoaderOptions | None = None,
                   failed: set[int] | None = None, group: Group | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised features (N, D) and labels (N,) of the images that loaded, in one pass; the rest go into `failed`.

    With a distributed `group`, each rank computes every world-th item and all of them are gathered on every rank.
    """
    classifier.eval()
    feats, labels = [], []
    failed = set() if failed is None else failed
    group = group or Group()
    indices = rank_indices(len(as_dataset(data)), group) if group.distributed else None
    for images, y in loaded_batches(training_loader(data, batch_size, device, loader, indices=indices), failed):
        feats.append(classifier.features(images.to(device, non_blocking=True)).float().cpu())
        labels.append(y.long())
    if indices is not None:  # a distributed group: this rank computed its part only
        mine = (torch.cat(feats), torch.cat(labels)) if feats else (torch.zeros(0, 0), torch.zeros(0, dtype=torch.long))
        gathered, labels_all, failed_all = gather_features(group, indices, *mine, failed)
        failed.update(failed_all)
        feats, labels = [gathered], [labels_all]
    if not feats or not len(feats[0]):
        raise ValueError("no training image could be loaded")
    return torch.cat(feats), torch.cat(labels)


def finetune_linear(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig | None = None,
                    device: torch.device | str = "cpu", progress: bool = True,
                    callback: ProgressCallback | None = None, loader: LoaderOptions | None = None,
                    group: Group | None = None) -> FinetuneResult:
    """Train only the head (initialised from the zero-shot head) on frozen image features.

    Distributed, the feature pass is shared out and gathered; the head (a few seconds of work) then trains alike on
    every rank, on every feature, exactly as in one process.
    """
    config = config or FinetuneConfig(mode="linear")
    start = time.perf_counter()
    model = copy.deepcopy(classifier).to(device).float().eval().requires_grad_(False)
    # The tower is frozen, so its features are computed once, streaming, instead of every epoch: the features
    # (N x D floats: about 4 GB for ImageNet's 1.28 M images at D=768) are what stays in memory, never the images.
    failed: set[int] = set()
    feats, labels = image_features(model, data, device, loader=loader, failed=failed, group=group)
    head = model.head.requires_grad_(True)
    batches = training_loader((feats, labels), config.batch_size, device, seed=config.seed)

    def step_loss(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits, y = head(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
        return F.cross_entropy(logits, y), logits, y

    losses, accuracy = _optimise(list(head.parameters()), lambda: loaded_batches(batches, set()), step_loss, config,
                                 len(batches), "fine-tune (linear classifier)", progress, callback)
    model.requires_grad_(False)
    return FinetuneResult(model, as_run(config, "linear", len(batches)), losses, time.perf_counter() - start,
                          sorted(failed), accuracy)


def finetune(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig,
             device: torch.device | str = "cpu", progress: bool = True,
             callback: ProgressCallback | None = None, loader: LoaderOptions | None = None,
             group: Group | None = None) -> FinetuneResult:
    """Fine-tune in the config's mode (end-to-end or linear), reading `data` as `loader` says, on `group`'s ranks."""
    if config.mode == "flyp":
        raise ValueError("FLYP trains both towers against captions: call training.flyp.finetune_flyp with the CLIP "
                         "model, its tokenizer, the class names and templates")
    if config.mode not in ("end-to-end", "linear"):
        raise ValueError(f"finetune() runs the end-to-end and linear modes; mode {config.mode!r} is LP-FT's: call "
                         "training.finetune_lp_ft, which runs a probe and then end-to-end fine-tuning")
    run = finetune_end_to_end if config.mode == "end-to-end" else finetune_linear
    return run(classifier, data, config, device, progress, callback, loader, group)


def finetune_metadata(result: FinetuneResult, metadata: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's metadata: the caller's, with the recipe as run, its final loss and training accuracy."""
    return {**metadata, "recipe": {**metadata.get("recipe", {}), **result.config.to_dict(),
                                   "final_loss": result.final_loss, "train_accuracy": result.train_accuracy},
            "seed": result.config.seed, "train_seconds": round(result.seconds, 1)}


def save_finetuned(path: str | Path, result: FinetuneResult, metadata: dict[str, Any],
                   dtype: torch.dtype | None = None) -> Path:
    """Write a classifier checkpoint in our format; linear classifiers store only the head."""
    state = result.classifier.state_dict()
    meta = finetune_metadata(result, metadata)
    if result.departures:
        meta["recipe"]["departures"] = result.departures
    if result.stages:
        meta |= {"method": result.config.mode, "stages": result.stages}
    if result.config.mode == "linear":
        state = {k: v for k, v in state.items() if k.startswith("head.")}
        meta["image_tower"] = "zeroshot"
    return save_checkpoint(path, state, meta, dtype=dtype)
