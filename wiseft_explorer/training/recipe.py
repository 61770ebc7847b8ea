"""The paper's fine-tuning recipe: its settings, and the learning-rate schedule (linear warmup, cosine decay)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

MODES = ("end-to-end", "linear")
BN_MODES = ("frozen", "train")


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


def cosine_lr(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup to `base`, then cosine decay to 0 at `total` steps."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def effective_warmup(config: FinetuneConfig, total_steps: int) -> int:
    """The warmup steps actually run: at most a tenth of a short run (it must not spend all its steps warming up)."""
    return min(config.warmup, max(1, total_steps // 10))


def as_run(config: FinetuneConfig, mode: str, steps_per_epoch: int) -> FinetuneConfig:
    """The config as it was actually run: its mode, and the warmup a short run cut down (recorded in checkpoints)."""
    warmup = effective_warmup(config, config.epochs * steps_per_epoch)
    return FinetuneConfig(**{**config.to_dict(), "mode": mode, "warmup": warmup})
