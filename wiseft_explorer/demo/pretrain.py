"""Contrastive (CLIP) pretraining of a small open_clip model on the demo world's captioned image pool."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import open_clip
import torch
from open_clip.loss import ClipLoss
from torch import nn
from tqdm.auto import tqdm

from ..training.recipe import cosine_lr  # one warmup + cosine schedule for pretraining and fine-tuning
from ..world.captions import caption, vocabulary_text
from ..world.render import CLASSES
from ..world.sets import WorldSet, make_set


@dataclass(frozen=True)
class PretrainConfig:
    """Recipe for contrastive pretraining on the world (defaults: the demo's)."""

    steps: int = 600
    # The cosine schedule's length; stopping before its end keeps the zero-shot model deliberately moderate
    # (about 62% on ID photos, 82% on sketches): a fully trained one leaves fine-tuning too little to gain.
    schedule_steps: int | None = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 100
    pool_size: int = 50_000
    noisy_captions: float = 0.1  # share of captions that name a wrong shape, as web alt-text sometimes does
    logit_scale_init: float = 1 / 0.07  # CLIP's initial temperature
    logit_scale_max: float = 100.0
    # The temperature stored with the finished model, so also the zero-shot head's (None: keep the learned one).
    # Short pretraining leaves it near its start (about 16); CLIP ends at 100. With the demo's recipe, WiSE-FT's ID
    # at alpha 0.5 was 5.5 points below fine-tuned at 47, 6.4 at the learned 15.6 and 5.9 at 100 (3,000 images).
    zero_shot_logit_scale: float | None = 47.0
    seed: int = 0

    def to_dict(self) -> dict:
        """JSON-able recipe for checkpoint metadata."""
        return asdict(self)


def images_to_tensor(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), the same as open_clip's eval transform at 32 px."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def image_normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean/std an open_clip model's image tower expects."""
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return tuple(mean), tuple(std)


def vocabulary_token_ids(tokenizer) -> torch.Tensor:
    """Sorted token ids that world captions and demo prompts can produce (incl. start, end and padding)."""
    ids = set(tokenizer.encode(vocabulary_text()))
    ids |= {tokenizer.sot_token_id, tokenizer.eot_token_id, 0}
    return torch.tensor(sorted(ids), dtype=torch.long)


def zero_unused_token_rows(model: nn.Module, keep: torch.Tensor) -> int:
    """Zero every token-embedding row not in `keep`; returns how many rows were zeroed.

    Such rows never receive a gradient, and AdamW (decoupled decay of zero stays zero) keeps them exactly 0,
    so the checkpoint stores the embedding compactly without changing any output on world text.
    """
    weight = model.token_embedding.weight
    mask = torch.ones(weight.shape[0], dtype=torch.bool)
    mask[keep] = False
    with torch.no_grad():
        weight[mask] = 0.0
    return int(mask.sum())


def create_model(name: str, seed: int, logit_scale_init: float) -> tuple[nn.Module, object]:
    """A freshly initialised open_clip model (its config must be registered) and its tokenizer."""
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(logit_scale_init))
    tokenizer = open_clip.get_tokenizer(name)
    zero_unused_token_rows(model, vocabulary_token_ids(tokenizer))
    return model, tokenizer


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """CLIP's grouping: no weight decay on gains, biases, norms and the temperature."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def caption_batch(pool: WorldSet, indices: np.ndarray, rng: np.random.Generator, noisy: float) -> list[str]:
    """Fresh captions for pool images; a share of them name a wrong shape (noisy web supervision)."""
    texts = []
    for i in indices:
        attrs = pool.attributes[int(i)]
        if rng.random() < noisy:
            wrong = (attrs.label + 1 + int(rng.integers(len(CLASSES) - 1))) % len(CLASSES)
            attrs = replace(attrs, label=wrong)
        texts.append(caption(attrs, rng))
    return texts


def pretrain(model: nn.Module, tokenizer, config: PretrainConfig, pool: WorldSet | None = None,
             callback: Callable[[int, float], None] | None = None, progress: bool = True) -> dict:
    """Train `model` in place with the CLIP loss on the world's pretraining pool; returns a summary."""
    start = time.perf_counter()
    if pool is None:
        pool = make_set("pretrain", seed=config.seed, n=config.pool_size)
    render_s = time.perf_counter() - start
    mean, std = image_normalisation(model)
    images = torch.from_numpy(pool.images)  # uint8; converted per batch to keep memory small
    model.train()
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  eps=1e-6)
    loss_fn = ClipLoss()
    rng = np.random.default_rng([config.seed, 1])
    losses: list[float] = []
    bar = tqdm(range(config.steps), desc="pretrain", disable=not progress, mininterval=2.0)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step, config.schedule_steps or config.steps, config.lr, config.warmup)
        idx = rng.choice(len(pool), size=config.batch_size, replace=False)
        x = images_to_tensor(images[idx].numpy(), mean, std)
        text = tokenizer(caption_batch(pool, idx, rng, config.noisy_captions))
        image_features, text_features, scale = model(x, text)
        loss = loss_fn(image_features, text_features, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():  # CLIP clamps the temperature so logits stay bounded
            model.logit_scale.clamp_(0, math.log(config.logit_scale_max))
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
        if callback is not None:
            callback(step + 1, losses[-1])
    model.eval()
    learned = model.logit_scale.exp().item()
    if config.zero_shot_logit_scale is not None:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(config.zero_shot_logit_scale))
    return {"render_s": round(render_s, 1), "train_s": round(time.perf_counter() - start - render_s, 1),
            "final_loss": float(np.mean(losses[-50:])), "learned_logit_scale": learned,
            "logit_scale": model.logit_scale.exp().item()}
