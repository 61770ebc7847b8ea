"""Predictions for individual images: top-5 of zero-shot, theta_alpha and fine-tuned, probability along alpha."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from PIL import Image

from .batching import predict_logits
from .curves import ALPHA_GRID
from .data import preprocess_images
from .heads import text_scores
from .interpolate import Working
from .runtime import ExperimentRuntime

TOP_K = 5


@dataclass
class TopK:
    """The most likely classes of one image under one model."""

    classes: list[str]
    probs: list[float]

    def as_dict(self) -> dict:
        """JSON-friendly form."""
        return {"classes": self.classes, "probs": [round(p, 6) for p in self.probs]}


def _topk(probs: torch.Tensor, classnames: Sequence[str], k: int = TOP_K) -> list[TopK]:
    values, idx = probs.topk(min(k, probs.shape[1]), dim=-1)
    return [TopK([classnames[i] for i in row_idx.tolist()], row_val.tolist()) for row_val, row_idx in zip(values, idx, strict=True)]


def preprocess(runtime: ExperimentRuntime, pictures: Sequence[Image.Image]) -> torch.Tensor:
    """Apply the experiment's eval transform to RGB images -> (N,3,H,W)."""
    return preprocess_images(list(pictures), runtime.models.clip.preprocess)


def predict_three(runtime: ExperimentRuntime, images: torch.Tensor, alpha: float,
                  working: Working) -> dict[str, list[TopK]]:
    """Top-5 per image for the zero-shot model, theta_alpha (in the caller's working model) and fine-tuned."""
    pair, exp = runtime.models, runtime.experiment
    out = {}
    for label, model in (("zeroshot", pair.zeroshot), ("alpha", runtime.classifier_at(working, alpha)),
                         ("finetuned", pair.finetuned)):
        logits = predict_logits(model, images, pair.device, exp.precision, exp.batch_size)
        out[label] = _topk(logits.softmax(-1), exp.classnames)
    return out


def probability_along_alpha(runtime: ExperimentRuntime, images: torch.Tensor, working: Working,
                            alphas: Sequence[float] = ALPHA_GRID) -> torch.Tensor:
    """Class probabilities of each image at each alpha -> (A, N, C); leaves `working` at its previous alpha."""
    pair, exp = runtime.models, runtime.experiment
    previous = working.alpha
    probs = []
    for alpha in alphas:
        model = runtime.classifier_at(working, alpha)
        probs.append(predict_logits(model, images, pair.device, exp.precision, exp.batch_size).softmax(-1))
    if previous is not None:
        runtime.classifier_at(working, previous)
    return torch.stack(probs)


def curve_frame(probs: torch.Tensor, classnames: Sequence[str], alphas: Sequence[float] = ALPHA_GRID,
                top: int = 5) -> pd.DataFrame:
    """Long table (alpha, class, probability) for one image's (A, C) probabilities, keeping its top classes."""
    keep = probs.max(dim=0).values.topk(min(top, probs.shape[1])).indices.tolist()
    rows = [{"alpha": float(a), "class": classnames[c], "probability": float(probs[i, c])}
            for i, a in enumerate(alphas) for c in keep]
    return pd.DataFrame(rows)


def zero_shot_with_extra(runtime: ExperimentRuntime, images: torch.Tensor,
                         extra: Sequence[str]) -> list[TopK]:
    """Zero-shot top-5 over the experiment's classes plus user-typed extra class names."""
    pair, exp = runtime.models, runtime.experiment
    names = list(exp.classnames) + [e for e in dict.fromkeys(x.strip() for x in extra) if e and e not in exp.classnames]
    with torch.inference_mode():
        features = pair.zeroshot.features(images.to(pair.device)).float()
    logits = text_scores(pair.clip.model, pair.clip.tokenizer, names, list(exp.templates), features)
    return _topk(logits.softmax(-1).cpu(), names)
