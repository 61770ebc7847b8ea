"""The paper's fine-tuning recipe: its settings, and the learning-rate schedule (linear warmup, cosine decay)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MODES = ("end-to-end", "linear", "lp-ft", "flyp")  # lp-ft: a linear probe, then end-to-end from its head (lpft.py)
# FLYP's own settings where they differ from the defaults below (locuslab/FLYP's ImageNet command: --lr 1e-5, batch
# 512, 10 epochs, wd 0.1, warmup 500, AdamW, cosine; its loop clips no gradient norm).
FLYP_DEFAULTS: dict[str, Any] = {"lr": 1e-5, "grad_clip": float("inf")}
BN_MODES = ("frozen", "train")
AUGMENT_MODES = ("train", "none")


@dataclass(frozen=True)
class FinetuneConfig:
    """The fine-tuning recipe. Defaults: the paper's ImageNet runs (mlfoundations/wise-ft, `src/models/finetune.py`
    with the README's `--lr 3e-5 --batch-size 512 --epochs 10`).

    `batch_size` is the images of one optimiser step (over all processes under torchrun); `lr` is used as given,
    never rescaled to another batch. `micro_batch` splits each process's share of a step into forward/backward
    passes of at most that many images whose gradients add up to the step's (gradient accumulation: the same
    update, less memory; with bn='train', BatchNorm then normalises each micro-batch by its own statistics).
    `augment`: 'train' reads end-to-end training images through the model's training transform (open_clip's and
    CLIP's RandomResizedCrop, scale 0.9-1, bicubic, as the paper); 'none' through the evaluation transform. The
    linear mode always computes its features with the evaluation transform, as the paper does.
    """

    mode: str = "end-to-end"
    epochs: int = 10
    lr: float = 3e-5
    batch_size: int = 512
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup: int = 500  # steps of linear warmup before the cosine decay
    grad_clip: float = 1.0
    bn: str = "train"  # train: BatchNorm statistics update (the paper's model.train()); frozen: keep pretrained ones
    augment: str = "train"
    micro_batch: int | None = None  # images per forward/backward pass and process; None: the whole share
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.bn not in BN_MODES:
            raise ValueError(f"bn must be one of {BN_MODES}, not {self.bn!r}")
        if self.augment not in AUGMENT_MODES:
            raise ValueError(f"augment must be one of {AUGMENT_MODES}, not {self.augment!r}")
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ValueError(f"micro_batch must be 1 or more (or None: the whole batch), not {self.micro_batch}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able recipe for checkpoint metadata."""
        return asdict(self)


def mode_defaults(mode: str) -> dict[str, Any]:
    """The settings a mode's paper gives where they differ from FinetuneConfig's defaults (the WiSE-FT paper's)."""
    return dict(FLYP_DEFAULTS) if mode == "flyp" else {}


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup to `base`, then cosine decay to 0 at `total` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def effective_warmup(config: FinetuneConfig, total_steps: int) -> int:
    """The warmup steps actually run: at most a tenth of a short run (it must not spend all its steps warming up)."""
    return min(config.warmup, max(1, total_steps // 10))


def as_run(config: FinetuneConfig, mode: str, steps_per_epoch: int) -> FinetuneConfig:
    """The config as it was actually run (recorded in checkpoints): its mode, the warmup a short run cut down, and
    for the linear mode the evaluation transform (its features) and no BatchNorm update (the tower is frozen)."""
    warmup = effective_warmup(config, config.epochs * steps_per_epoch)
    linear = {"augment": "none", "bn": "frozen"} if mode == "linear" else {}
    return FinetuneConfig(**{**config.to_dict(), "mode": mode, "warmup": warmup, **linear})
