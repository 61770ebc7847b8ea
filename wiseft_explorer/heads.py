"""Zero-shot heads: class names x prompt templates -> a linear layer over normalised image features."""

from __future__ import annotations

import torch
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from torch import nn


@torch.inference_mode(False)
def zero_shot_head(clip_model: nn.Module, tokenizer, classnames: list[str], templates: list[str],
                   device: torch.device | str = "cpu") -> nn.Linear:
    """Head whose rows are the normalised mean text embeddings of each class, times logit_scale.exp()."""
    with torch.no_grad():
        weights = build_zero_shot_classifier(clip_model, tokenizer, classnames, templates,
                                             num_classes_per_batch=10, device=device)  # (D, C)
        scale = clip_model.logit_scale.exp().float()
        head = nn.Linear(weights.shape[0], weights.shape[1], bias=True)
        # The paper's head: logits = logit_scale * <normalised image feature, normalised class embedding>.
        head.weight.copy_((weights.T * scale).float())
        head.bias.zero_()
    return head.to(device)


def text_scores(clip_model: nn.Module, tokenizer, classnames: list[str], templates: list[str],
                features: torch.Tensor) -> torch.Tensor:
    """Zero-shot logits of normalised image features (B, D) against arbitrary class names -> (B, C)."""
    head = zero_shot_head(clip_model, tokenizer, classnames, templates, features.device)
    with torch.no_grad():
        return head(features.float())
