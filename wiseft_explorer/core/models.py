"""Models: the classifier (image tower + linear head), the loaded CLIP and the pair, device and precision.

Loading them from files, tags or the Hub is `loading`'s work."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from ..store.cache import DiskCache
from .checkpoints import CLASSIFIER_FORMAT
from .heads import HeadProgress, cached_zero_shot_head
from .lineage import activation_of, visual_digest


class ModelLoadError(RuntimeError):
    """A model that could not be loaded, with the reason and the fix."""


class ImageClassifier(nn.Module):
    """The paper's classifier: image tower -> L2-normalised features -> linear head (class logits).

    `normalize=False` is the layout of a timm classifier pair (core.timm_clip): the head scores the tower's output
    as it is, the way timm's fine-tuned heads do; both endpoints of a pair then share it."""

    def __init__(self, visual: nn.Module, head: nn.Linear, normalize: bool = True) -> None:
        super().__init__()
        self.visual = visual
        self.head = head
        self.normalize = normalize

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Image features in fp32 (normalised unless the pair's layout says not), (B, 3, H, W) -> (B, D); the tower
        runs in any autocast around it."""
        raw = self.visual(images)
        with full_precision(raw.device):
            return F.normalize(raw.float(), dim=-1) if self.normalize else raw.float()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits in fp32, (B, 3, H, W) -> (B, C).

        The head is computed in fp32 even under bf16/fp16 autocast: logits of 20-35 in bf16 come in steps of 0.125
        to 0.25, so classes tie (argmax takes the lowest index) and neighbouring alphas jitter.
        """
        return head_logits(self.features(images), self.head.weight, self.head.bias)

    @property
    def num_classes(self) -> int:
        """Number of output classes of the head."""
        return self.head.out_features


def head_logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The linear head in fp32, autocast or not: (B, D) features -> (B, C) logits."""
    with full_precision(features.device):
        return F.linear(features, weight.float(), None if bias is None else bias.float())


class Tower(nn.Module):
    """A classifier's image tower alone: (B, 3, H, W) -> (B, D) normalised features, as its forward computes them."""

    def __init__(self, classifier: ImageClassifier) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(images)


class FeatureHead(nn.Module):
    """A linear head alone (weights given, not copied): (B, D) features -> (B, C) logits, as the classifier's."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return head_logits(features, self.weight, self.bias)


@dataclass
class LoadedClip:
    """A zero-shot open_clip model with its eval transform and tokenizer (shared, read-only)."""

    model: nn.Module
    preprocess: Any
    tokenizer: Any
    name: str
    preprocess_note: str = ""  # the eval transform in use and where it comes from (loading.apply_preprocess)
    # A zero-shot *classifier* file (e.g. the paper's zeroshot.pt, converted) brings its head: {"weight", "bias"}.
    stored_head: dict[str, torch.Tensor] | None = None
    source: str = ""  # where the weights came from, for messages (a file name or tag)


@dataclass
class ModelPair:
    """Zero-shot and fine-tuned classifiers of one experiment; both are read-only references."""

    clip: LoadedClip
    zeroshot: ImageClassifier
    finetuned: ImageClassifier
    device: torch.device
    precision: str
    finetuned_metadata: dict = field(default_factory=dict)
    finetuned_text: dict[str, torch.Tensor] | None = None  # the text tower a FLYP endpoint carries (core.text_heads)

    @property
    def notes(self) -> list[str]:
        """Things done to make the pair fit the experiment that the user should know (e.g. head rows reordered)."""
        stored = [f"zero-shot head: the one stored in {self.clip.source} ({self.zeroshot.num_classes} classes); the "
                  "experiment's prompt templates are not used"] if self.clip.stored_head is not None else []
        return stored + list(self.finetuned_metadata.get("notes", []))


def pick_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else is passed to torch.device."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ModelLoadError(f"device {name!r} is not valid ({err}); use auto, cpu, cuda or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {name!r} requested but CUDA is not available; use device = \"auto\" or \"cpu\"")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed-precision context: bf16/fp16 autocast on GPU; plain fp32 on CPU (autocast is no faster there)."""
    if precision == "fp32" or device.type == "cpu":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast switched off on `device`: what runs inside stays in the dtype of its inputs (fp32 here)."""
    return torch.autocast(device_type=device.type, enabled=False)


def build_zeroshot(clip: LoadedClip, classnames: list[str] | tuple[str, ...], templates: list[str] | tuple[str, ...],
                   device: torch.device | str = "cpu", *, cache: DiskCache | None = None,
                   identity: Mapping[str, str] | None = None, progress: HeadProgress | None = None) -> ImageClassifier:
    """The zero-shot classifier: a copy of the image tower + the text-derived head (cached when given both).

    A zero-shot classifier file's stored head is used as stored (the templates are then unused)."""
    if clip.stored_head is not None:
        return ImageClassifier(copy.deepcopy(clip.model.visual), _stored_head(clip, classnames)).to(device).eval() \
            .requires_grad_(False)
    # Without the weights' identity a key could not tell two models apart: build, never cache.
    head = cached_zero_shot_head(clip.model, clip.tokenizer, classnames, templates, identity or {},
                                 cache if identity else None, device, progress)
    return ImageClassifier(copy.deepcopy(clip.model.visual), head).to(device).eval().requires_grad_(False)


def _stored_head(clip: LoadedClip, classnames: list[str] | tuple[str, ...]) -> nn.Linear:
    assert clip.stored_head is not None
    weight = clip.stored_head["weight"].float()
    if weight.shape[0] != len(classnames):
        raise ModelLoadError(f"{clip.source}: its zero-shot head scores {weight.shape[0]} classes, but the experiment "
                             f"names {len(classnames)}; give [classes] the class list the head was built for")
    head = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(clip.stored_head.get("bias", torch.zeros(weight.shape[0])).float())
    return head


def parameter_count(module: nn.Module) -> int:
    """Number of parameters of a module."""
    return sum(p.numel() for p in module.parameters())


def classifier_metadata(clip: LoadedClip, classnames: list[str] | tuple[str, ...], **extra: Any) -> dict[str, Any]:
    """Metadata for a classifier checkpoint of our format, with its lineage: the activation its model uses and
    the digest of the zero-shot image tower (θ₀) it comes from."""
    return {"format": CLASSIFIER_FORMAT, "model": clip.name,
            "model_config": json.loads(json.dumps(open_clip.get_model_config(clip.name) or {})),
            "classnames": list(classnames), "activation": activation_of(clip.model),
            "zeroshot_digest": visual_digest(clip.model.visual.state_dict()), **extra}
