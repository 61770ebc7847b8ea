"""Predictions for individual images: top-5 of zero-shot, theta_alpha and fine-tuned, probability along alpha."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..core.heads import text_scores
from ..core.interpolate import Working
from ..core.models import FeatureHead, Tower
from ..data.images import DEFAULT_MAX_BYTES, ImageDecodeError, decode_many
from ..data.sets import load_batch, preprocess_images
from ..results.curves import ALPHA_GRID
from .batching import predict_logits
from .features import stored_features
from .runtime import ExperimentRuntime
from .sweep_result import SweepResult

TOP_K = 5
MODELS = ("zeroshot", "alpha", "finetuned")  # the three models every single-image view compares


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


def shared_features(runtime: ExperimentRuntime, images: torch.Tensor) -> torch.Tensor | None:
    """The images' features when every theta_alpha has the same image tower (computed once for all three models
    and every alpha: only the heads differ), else None."""
    if not runtime.space.shared_tower:
        return None
    pair, exp = runtime.models, runtime.experiment
    return predict_logits(Tower(pair.zeroshot), images, pair.device, exp.precision, exp.batch_size)


def _logits(runtime: ExperimentRuntime, head: tuple[torch.Tensor, torch.Tensor | None], model: Callable[[], nn.Module],
            images: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """Logits of the images: `head` on their features when given (the classifier's numbers), else `model()`'s."""
    pair, exp = runtime.models, runtime.experiment
    if features is not None:
        return predict_logits(FeatureHead(*head), features, pair.device, exp.precision, exp.batch_size)
    return predict_logits(model(), images, pair.device, exp.precision, exp.batch_size)


def image_digest(images: torch.Tensor) -> str:
    """Content key of a preprocessed batch: what results shared between sessions are keyed on."""
    return hashlib.sha256(images.contiguous().cpu().numpy().tobytes()).hexdigest()


def predict_three(runtime: ExperimentRuntime, images: torch.Tensor, alpha: float, working: Working,
                  features: torch.Tensor | None = None) -> dict[str, list[TopK]]:
    """Top-5 per image for the zero-shot model, theta_alpha (in the caller's working model) and fine-tuned.

    The two endpoints do not depend on alpha: their probabilities are computed once per batch of images and shared
    by every session (runtime.shared_tensor), so a class moving its alphas over one example pays for theta_alpha alone.
    With the images' shared `features`, the three are three heads on them (the working model is not written)."""
    pair, exp = runtime.models, runtime.experiment
    digest = image_digest(images)
    models = {"zeroshot": ((pair.zeroshot.head.weight, pair.zeroshot.head.bias), lambda: pair.zeroshot),
              "alpha": (runtime.space.head_at(alpha), lambda: runtime.classifier_at(working, alpha)),
              "finetuned": ((pair.finetuned.head.weight, pair.finetuned.head.bias), lambda: pair.finetuned)}

    def probs(label: str) -> torch.Tensor:
        head, model = models[label]
        return _logits(runtime, head, model, images, features).softmax(-1)

    def shared(label: str) -> torch.Tensor:
        return runtime.shared_tensor(("endpoint_probs", label, digest), lambda: probs(label))

    ends = {label: shared(label) for label in ("zeroshot", "finetuned")}
    return {label: _topk(ends[label] if label in ends else probs(label), exp.classnames) for label in models}


def probability_along_alpha(runtime: ExperimentRuntime, images: torch.Tensor, working: Working,
                            alphas: Sequence[float] = ALPHA_GRID, features: torch.Tensor | None = None) -> torch.Tensor:
    """Class probabilities of each image at each alpha -> (A, N, C); leaves `working` at its previous alpha.

    With the images' shared `features` (shared_features), each alpha is its head on them: no forward pass."""
    previous = working.alpha
    probs = [_logits(runtime, runtime.space.head_at(alpha), functools.partial(runtime.classifier_at, working, alpha),
                     images, features).softmax(-1) for alpha in alphas]
    if previous is not None and features is None:
        runtime.classifier_at(working, previous)
    return torch.stack(probs)


def probabilities_over_grid(result: SweepResult, set_name: str, index: int) -> torch.Tensor | None:
    """Class probabilities (A, C) of one image over the sweep's grid, or None if the sweep did not keep them."""
    rows = []
    for alpha in sorted(result.alphas):
        preds = result.predictions[set_name][alpha]
        hit = (preds.index == index).nonzero()
        if preds.probs is None or len(hit) == 0:
            return None
        rows.append(preds.probs[int(hit[0, 0])].float())
    return torch.stack(rows)


def image_probabilities(runtime: ExperimentRuntime, result: SweepResult, set_name: str, index: int) -> torch.Tensor:
    """Class probabilities (A, C) of one eval image over the sweep's grid: as the sweep kept them, else computed now.

    Large label sets keep no probabilities in the sweep (memory); then this image alone goes through theta_alpha,
    or, when the tower is shared, the heads along alpha take its features from the feature cache.
    """
    probs = probabilities_over_grid(result, set_name, index)
    if probs is not None:
        return probs
    features = stored_features(runtime, set_name, index)  # a shared tower's, kept by a sweep: no decode, no forward
    image = features
    if features is None:
        image, _, failed = load_batch(runtime.eval_set(set_name), [index], runtime.preprocess)
        if failed:
            raise ImageDecodeError(f"image #{index} of {set_name}", failed[0][1])
        features = shared_features(runtime, image)
    with runtime.borrow_working() as working:
        return probability_along_alpha(runtime, image, working, sorted(result.alphas), features)[:, 0]


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
    with torch.inference_mode():  # θ₀'s CLIP features (a timm pair's classifier scores the un-projected token)
        features = F.normalize(pair.clip.model.visual(images.to(pair.device)).float(), dim=-1)
    logits = text_scores(pair.clip.model, pair.clip.tokenizer, names, list(exp.templates), features)
    return _topk(logits.softmax(-1).cpu(), names)


@dataclass
class ImageAnalysis:
    """One image (a file, an example of a set, a drawing, a snapshot): its picture and predictions, or its error."""

    name: str
    image: Image.Image | None = None
    error: str | None = None
    truth: str | None = None  # the true class, when the image comes from an evaluation set
    right: tuple[str, ...] = ()  # the class names a top-1 may be to be right (ObjectNet: its ImageNet classes)
    top: dict[str, TopK] = field(default_factory=dict)  # "zeroshot" / "alpha" / "finetuned" -> top-5
    curve: pd.DataFrame | None = None  # (alpha, class, probability) of the top classes
    extra: TopK | None = None  # zero-shot over the experiment's classes plus the user's extra names


def analyse_images(runtime: ExperimentRuntime, working: Working, items: Sequence[ImageAnalysis], alpha: float,
                   extra: Sequence[str] = ()) -> list[ImageAnalysis]:
    """Fill in the predictions of every item that has a picture, as one batch (items with an error are kept)."""
    good = [(item, item.image) for item in items if item.image is not None and item.error is None]
    if not good:
        return list(items)
    images = preprocess(runtime, [image for _, image in good])
    features = shared_features(runtime, images)  # a shared tower: one forward for the three models and every alpha
    top = predict_three(runtime, images, alpha, working, features)
    # (A, N, C), the same at every alpha: computed once per image set and shared by every session that shows it.
    digest = image_digest(images)
    probs = runtime.shared_tensor(("probability_along_alpha", ALPHA_GRID, digest),
                                  lambda: probability_along_alpha(runtime, images, working, ALPHA_GRID, features))
    extras = zero_shot_with_extra(runtime, images, extra) if any(e.strip() for e in extra) else None
    for i, (item, _) in enumerate(good):
        item.top = {label: top[label][i] for label in MODELS}
        item.curve = curve_frame(probs[:, i], runtime.experiment.classnames, ALPHA_GRID)
        item.extra = extras[i] if extras else None
    return list(items)


def analyse_files(runtime: ExperimentRuntime, working: Working, files: Sequence[tuple[str, bytes]], alpha: float,
                  extra: Sequence[str] = ()) -> list[ImageAnalysis]:
    """Decode every (name, bytes) file (a bad one becomes an error naming it) and predict the good ones."""
    decoded = decode_many(files, max_bytes=DEFAULT_MAX_BYTES)
    items = [ImageAnalysis(d.name, d.image, None if d.error is None else d.error.reason) for d in decoded]
    return analyse_images(runtime, working, items, alpha, extra)


def set_example(runtime: ExperimentRuntime, set_name: str, index: int) -> ImageAnalysis:
    """Image `index` of an evaluation set, named with its set and true class, ready for analyse_images."""
    ev = runtime.eval_set(set_name)
    label, names = int(ev.labels[index]), runtime.experiment.classnames
    right = tuple(names[c] for c in ev.right_classes(label))
    return ImageAnalysis(f"{set_name} #{index}", ev.picture(index), truth=ev.class_names(names)[label], right=right)


def example_indices(runtime: ExperimentRuntime, set_name: str, count: int) -> list[int]:
    """The first `count` images of a set's fair order: one of every class first, so examples cover the classes."""
    return [int(i) for i in runtime.eval_set(set_name).order[:count]]


def drawing_picture(rgba: np.ndarray | None) -> Image.Image | None:
    """A drawing canvas's RGBA pixels (H, W, 4) flattened onto white; None while nothing has been drawn."""
    if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4:
        return None
    alpha = rgba[..., 3:4].astype(np.float32) / 255
    rgb = np.clip((rgba[..., :3].astype(np.float32) * alpha + 255 * (1 - alpha)).round(), 0, 255).astype(np.uint8)
    # A blank canvas is transparent, or white where a background colour is painted in.
    return Image.fromarray(rgb, "RGB") if (rgb < 250).any() else None
