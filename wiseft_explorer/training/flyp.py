"""FLYP (Goyal et al., CVPR 2023, "Finetune like you pretrain"): both towers fine-tuned with CLIP's contrastive loss.

Each training image's caption is its class name in a prompt template (drawn per image and epoch from the
experiment's templates); the loss is CLIP's symmetric cross-entropy over the batch's image-caption similarities,
scaled by the learnable logit scale, as in pretraining. The classifier is then the fine-tuned text tower's zero-shot
head on the fine-tuned image tower, and the checkpoint carries both towers, so that WiSE-FT interpolates both
(the head of θ_α is built from the interpolated text tower: core.text_heads).
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from ..core.checkpoints import save_checkpoint
from ..core.distributed import Group
from ..core.heads import zero_shot_head
from ..core.models import ImageClassifier
from ..core.text_heads import TEXT_PREFIX, text_state
from ..store.keys import TEXT_TOWER_KEY
from .augment import AugmentedImages, image_seed
from .distributed import data_parallel, gather_with_grad
from .finetuning import FinetuneResult, ProgressCallback, _optimise, finetune_metadata, set_train_mode
from .loader import Batch, LoaderOptions, TrainData, as_dataset, loaded_batches, training_loader
from .recipe import FLYP_DEFAULTS, FinetuneConfig, as_run

# What the recipe records beside the settings: how this run follows the paper, and where it departs from it.
FLYP_RECIPE = {
    "loss": "CLIP's symmetric cross-entropy over the batch's image-caption similarities, times the learnable "
            "logit_scale.exp() (as locuslab/FLYP's ClipLoss; logit_scale trained, not clamped)",
    "captions": "each image's class name in one of the experiment's templates, drawn uniformly per image and epoch "
                "from blake2b(seed:epoch:index) (FLYP's code draws (image, template) rows from a table of every pair, "
                "so an epoch may see an image twice or not at all)",
    "negatives": "every other caption of the global batch (under torchrun the features are all-gathered, with their "
                 "gradients, before the loss); captions of the same class count as negatives, as in FLYP",
    "classifier": "the fine-tuned text tower's zero-shot head (class names x templates) on the fine-tuned image tower",
}


@dataclass
class FlypResult(FinetuneResult):
    """A FLYP run: the classifier (fine-tuned image tower + text-tower head) and the whole fine-tuned CLIP."""

    clip_model: nn.Module | None = None  # the fine-tuned open_clip model, both towers, eval mode

    def text_state(self) -> dict[str, torch.Tensor]:
        """The fine-tuned text tower (every open_clip state entry that is not the image tower's), logit scale too."""
        assert self.clip_model is not None
        return text_state(self.clip_model)


class Captioned(Dataset):
    """Items (image, label * templates + template) of a training set: each image's caption drawn per epoch."""

    def __init__(self, data: TrainData, templates: int, seed: int) -> None:
        self.data, self.templates, self.seed, self.epoch = as_dataset(data), templates, seed, 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Any:
        item = self.data[index]
        if item is None:
            return None
        image, label = item
        template = image_seed(self.seed, self.epoch, index) % self.templates
        return image, torch.tensor(int(label) * self.templates + template)


def caption_tokens(tokenizer, classnames: Sequence[str], templates: Sequence[Any]) -> torch.Tensor:
    """Tokens of every class x template caption, row label * len(templates) + template (as open_clip's heads)."""
    texts = [t.format(c) if isinstance(t, str) else t(c) for c in classnames for t in templates]
    return tokenizer(texts)


def clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's loss: the mean of the image->text and text->image cross-entropies over the batch, where the i-th
    caption belongs to the i-th image. Features are L2-normalised; `logit_scale` is the exp of the parameter."""
    logits = logit_scale * image_features @ text_features.T
    targets = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def caption_scores(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C) scores: each image's best similarity to a caption of each class in the batch (-inf: none), so that
    argmax is the class of its best-matching caption (the run's training accuracy)."""
    scores = torch.full((len(logits), num_classes), float("-inf"), device=logits.device)
    index = labels.unsqueeze(0).expand(len(logits), -1)
    return scores.scatter_reduce(1, index, logits.detach().float(), reduce="amax")


class _Towers(nn.Module):
    """Both towers' normalised features and the logit scale in one forward (what DDP wraps)."""

    def __init__(self, clip_model: nn.Module) -> None:
        super().__init__()
        self.clip = clip_model

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        image = F.normalize(self.clip.encode_image(images).float(), dim=-1)
        text = F.normalize(self.clip.encode_text(tokens).float(), dim=-1)
        return image, text, self.clip.logit_scale.exp().float()


def finetune_flyp(clip_model: nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[Any],
                  data: TrainData, config: FinetuneConfig | None = None, device: torch.device | str = "cpu",
                  progress: bool = True, callback: ProgressCallback | None = None,
                  loader: LoaderOptions | None = None, group: Group | None = None) -> FlypResult:
    """Fine-tune both towers of `clip_model` (left unchanged) with CLIP's loss against class-prompt captions.

    `data` is read as `finetune_end_to_end` reads it (in-memory tensors with augment='none', or
    `augment.training_images(...)`). With a distributed `group`, every rank encodes its share of each global batch
    and the features are all-gathered (with their gradients) before the loss, so every caption of the global batch
    is a negative for every image, as in one process.
    """
    config = config or FinetuneConfig(mode="flyp", **FLYP_DEFAULTS)
    if config.micro_batch is not None:
        raise ValueError("FLYP's contrastive loss takes each image's negatives from the whole batch, so micro-batches "
                         "would change the loss, not only the memory: leave micro_batch unset (or lower batch_size)")
    if config.augment == "train" and not isinstance(data, AugmentedImages):
        raise ValueError("augment='train' reads the images through the model's training transform: pass "
                         "training.augment.training_images(...) as the data, or set augment='none'")
    start, group = time.perf_counter(), group or Group()
    model = copy.deepcopy(clip_model).to(device).float().requires_grad_(True)
    tokens = caption_tokens(tokenizer, classnames, templates).to(device)
    captioned = Captioned(data, len(templates), config.seed)
    batches = training_loader(captioned, config.batch_size, device, loader, seed=config.seed, group=group)
    failed: set[int] = set()
    set_train_mode(model, config.bn)
    net = data_parallel(_Towers(model), group)
    epochs = itertools.count()

    def epoch_batches() -> Any:
        captioned.epoch = next(epochs)
        if isinstance(data, AugmentedImages):
            data.epoch = captioned.epoch
        return loaded_batches(batches, failed)

    def step_loss(batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, codes = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
        image, text, scale = net(images, tokens[codes])
        labels = codes // len(templates)
        texts = gather_with_grad(group, text)  # every rank computes the whole batch's loss (the same value)
        loss = clip_loss(gather_with_grad(group, image), texts, scale)
        # Scores and labels of this rank's images only: _accumulate weighs the loss by their count.
        scores = caption_scores(scale * image @ texts.T, gather_with_grad(group, labels), len(classnames))
        return loss, scores, labels

    losses, accuracy = _optimise(list(model.parameters()), epoch_batches, step_loss, config, len(batches),
                                 "fine-tune (FLYP)", progress, callback, group)
    if not losses and failed:
        raise ValueError("no training image could be loaded")
    model.eval().requires_grad_(False)
    head = zero_shot_head(model, tokenizer, classnames, templates, device)
    classifier = ImageClassifier(model.visual, head).eval().requires_grad_(False)
    return FlypResult(classifier, as_run(config, "flyp", len(batches)), losses, time.perf_counter() - start,
                      sorted(failed), accuracy, clip_model=model)


def save_flyp(path: str | Path, result: FlypResult, metadata: dict[str, Any], dtype: torch.dtype | None = None) -> Path:
    """Write a FLYP checkpoint: the classifier (image tower + text-tower head) and the text tower under TEXT_PREFIX."""
    state = {**result.classifier.state_dict(), **{TEXT_PREFIX + k: v for k, v in result.text_state().items()}}
    meta = finetune_metadata(result, {**metadata, "recipe": {**metadata.get("recipe", {}), **FLYP_RECIPE}})
    return save_checkpoint(path, state, {**meta, TEXT_TOWER_KEY: TEXT_PREFIX}, dtype=dtype)
