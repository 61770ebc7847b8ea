"""Fine-tuning a zero-shot classifier with the paper's recipe: end-to-end (image tower + head) or linear classifier."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from .checkpoints import save_checkpoint
from .models import ImageClassifier

MODES = ("end-to-end", "linear")
BN_MODES = ("frozen", "train")
TrainData = Dataset | tuple[torch.Tensor, torch.Tensor]
ProgressCallback = Callable[[int, int, float], None]  # (step, total steps, loss)


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe (defaults: the paper's, except lr/epochs/batch which depend on the data)."""

    mode: str = "end-to-end"
    epochs: int = 10
    lr: float = 3e-5
    batch_size: int = 128
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup: int = 500  # steps of linear warmup before the cosine decay
    grad_clip: float = 1.0
    bn: str = "frozen"  # frozen: BatchNorm running statistics keep their pretrained values
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, not {self.bn!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able recipe for checkpoint metadata."""
        return asdict(self)


@dataclass
class FinetuneResult:
    """The fine-tuned classifier (a new module) and how training went."""

    classifier: ImageClassifier
    config: FinetuneConfig
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup to `base`, then cosine decay to 0 at `total` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def _as_dataset(data: TrainData) -> Dataset:
    if isinstance(data, tuple):
        images, labels = data
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        return TensorDataset(images, labels.long())
    return data


def set_train_mode(classifier: ImageClassifier, bn: str) -> None:
    """Training mode, except that BatchNorm layers stay in eval mode when bn='frozen'."""
    classifier.train()
    if bn == "frozen":
        # Photo-only batch statistics would overwrite the pretrained ones and hurt every other style.
        for module in classifier.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def _optimise(params: list[nn.Parameter], batches: Callable[[], Any], step_loss: Callable[[Any], torch.Tensor],
              config: FinetuneConfig, steps_per_epoch: int, desc: str, progress: bool,
              callback: ProgressCallback | None) -> list[float]:
    """The shared loop: AdamW, warmup + cosine, gradient-norm clipping; returns the loss of every step."""
    optimizer = torch.optim.AdamW(params, lr=config.lr, betas=config.betas, eps=config.eps,
                                  weight_decay=config.weight_decay)
    total = config.epochs * steps_per_epoch
    warmup = min(config.warmup, max(1, total // 10))  # short runs must not spend all their steps warming up
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=1.0)
    step = 0
    for _ in range(config.epochs):
        for batch in batches():
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, config.lr, warmup)
            loss = step_loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{sum(losses[-10:]) / 10:.3f}")
            if callback is not None:
                callback(step, total, losses[-1])
    bar.close()
    return losses


def finetune_end_to_end(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig | None = None,
                        device: torch.device | str = "cpu", progress: bool = True,
                        callback: ProgressCallback | None = None) -> FinetuneResult:
    """Fine-tune image tower and head (initialised from `classifier`, which is left unchanged) with cross-entropy."""
    config = config or FinetuneConfig()
    start = time.perf_counter()
    model = copy.deepcopy(classifier).to(device).float().requires_grad_(True)
    dataset = _as_dataset(data)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=len(dataset) > config.batch_size,
                        generator=generator)
    set_train_mode(model, config.bn)

    def step_loss(batch: Any) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images.to(device)), labels.to(device))

    losses = _optimise(list(model.parameters()), lambda: loader, step_loss, config, len(loader),
                       "fine-tune (end-to-end)", progress, callback)
    model.eval().requires_grad_(False)
    return FinetuneResult(model, replace_mode(config, "end-to-end"), losses, time.perf_counter() - start)


@torch.no_grad()
def image_features(classifier: ImageClassifier, data: TrainData, device: torch.device | str = "cpu",
                   batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image features (N, D) and labels (N,) of a dataset, with the tower in eval mode."""
    classifier.eval()
    feats, labels = [], []
    for images, y in DataLoader(_as_dataset(data), batch_size=batch_size):
        feats.append(classifier.features(images.to(device)).float().cpu())
        labels.append(y.long())
    return torch.cat(feats), torch.cat(labels)


def finetune_linear(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig | None = None,
                    device: torch.device | str = "cpu", progress: bool = True,
                    callback: ProgressCallback | None = None) -> FinetuneResult:
    """Train only the head (initialised from the zero-shot head) on frozen image features."""
    config = config or FinetuneConfig(mode="linear")
    start = time.perf_counter()
    model = copy.deepcopy(classifier).to(device).float().eval().requires_grad_(False)
    # The tower is frozen, so its features are computed once instead of every epoch.
    feats, labels = image_features(model, data, device)
    head = model.head.requires_grad_(True)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(TensorDataset(feats, labels), batch_size=config.batch_size, shuffle=True,
                        drop_last=len(feats) > config.batch_size, generator=generator)

    def step_loss(batch: Any) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(head(x.to(device)), y.to(device))

    losses = _optimise(list(head.parameters()), lambda: loader, step_loss, config, len(loader),
                       "fine-tune (linear classifier)", progress, callback)
    model.requires_grad_(False)
    return FinetuneResult(model, replace_mode(config, "linear"), losses, time.perf_counter() - start)


def replace_mode(config: FinetuneConfig, mode: str) -> FinetuneConfig:
    """The config with its mode set to what was actually run."""
    return FinetuneConfig(**{**config.to_dict(), "mode": mode})


def finetune(classifier: ImageClassifier, data: TrainData, config: FinetuneConfig,
             device: torch.device | str = "cpu", progress: bool = True,
             callback: ProgressCallback | None = None) -> FinetuneResult:
    """Fine-tune in the config's mode (end-to-end or linear)."""
    run = finetune_end_to_end if config.mode == "end-to-end" else finetune_linear
    return run(classifier, data, config, device, progress, callback)


def save_finetuned(path: str | Path, result: FinetuneResult, metadata: dict[str, Any],
                   dtype: torch.dtype | None = None) -> Path:
    """Write a classifier checkpoint in our format; linear classifiers store only the head."""
    state = result.classifier.state_dict()
    meta = {**metadata, "recipe": {**metadata.get("recipe", {}), **result.config.to_dict()},
            "seed": result.config.seed, "train_seconds": round(result.seconds, 1)}
    if result.config.mode == "linear":
        state = {k: v for k, v in state.items() if k.startswith("head.")}
        meta["image_tower"] = "zeroshot"
    return save_checkpoint(path, state, meta, dtype=dtype)
