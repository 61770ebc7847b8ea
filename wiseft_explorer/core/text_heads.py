"""The text tower along the WiSE-FT line: θ_α's head built from (1 − α)·text₀ + α·text₁ (a FLYP endpoint's).

A FLYP checkpoint carries its fine-tuned text tower (under TEXT_PREFIX). With head policy "text", the head of θ_α
is not the lerp of the two heads but the zero-shot head (class names x templates) of the interpolated text tower,
logit scale included: the classifier FLYP's own WiSE-FT evaluates. Each α's head is built once per `TextHeads`
(and kept in the heads' disk cache when one is given), so a sweep runs the text tower once per α, not per batch.
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..store.cache import DiskCache
from ..store.keys import TEXT_TOWER_KEY
from .checkpoints import check_compatible, load_checkpoint
from .heads import cached_zero_shot_head

TEXT_PREFIX = "text_tower."  # a FLYP checkpoint's text-tower tensors: this prefix + the open_clip state key
KEPT_HEADS = 64  # heads per α kept in memory (a sweep's grid and a few slider positions)


def text_state(clip_model: nn.Module) -> dict[str, torch.Tensor]:
    """An open_clip model's text tower: every state entry that is not the image tower's (logit scale included)."""
    return {k: v for k, v in clip_model.state_dict().items() if not k.startswith("visual.")}


def load_text_tower(path: str | Path, clip_model: nn.Module) -> dict[str, torch.Tensor] | None:
    """The text tower a fine-tuned checkpoint carries, checked against the zero-shot model's; None if it has none."""
    tensors, metadata = load_checkpoint(path)
    prefix = metadata.get(TEXT_TOWER_KEY)
    if not prefix:
        return None
    text = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    reference = text_state(clip_model)
    check_compatible(reference, text, f"the text tower of {Path(path).name}")
    return {k: v.to(reference[k].dtype) for k, v in text.items()}


def without_text_tower(tensors: dict[str, torch.Tensor], metadata: Mapping) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors less the text tower it carries (the classifier alone)."""
    prefix = metadata.get(TEXT_TOWER_KEY)
    return {k: v for k, v in tensors.items() if not (prefix and k.startswith(prefix))}


class TextHeads:
    """Heads of θ_α built from the lerp of two text towers; read-only to its callers, safe to share across threads."""

    def __init__(self, clip_model: nn.Module, text1: Mapping[str, torch.Tensor], tokenizer,
                 classnames: Sequence[str], templates: Sequence[str], device: torch.device | str = "cpu", *,
                 cache: DiskCache | None = None, identity: Mapping[str, str] | None = None) -> None:
        # A copy of the text tower alone: the image tower is left out of the copy (encode_text never uses it).
        self.model = copy.deepcopy(clip_model, memo={id(clip_model.visual): nn.Identity()}).to(device).eval()
        self.model.requires_grad_(False)
        # The endpoints are only read: on the same device they are the loaded tensors themselves, not copies.
        self.text0 = {k: v.detach().to(device) for k, v in text_state(clip_model).items() if v.is_floating_point()}
        self.text1 = {k: text1[k].detach().to(device, self.text0[k].dtype) for k in self.text0}
        self.tokenizer, self.classnames, self.templates = tokenizer, list(classnames), list(templates)
        self.device, self.cache, self.identity = device, cache, dict(identity or {})
        self._heads: OrderedDict[float, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._lock = threading.Lock()
        self.built = 0  # heads made (built, or read from the disk cache): a sweep makes one per α inside (0, 1)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor held: both endpoints' text towers and the working copy (for a runtime's memory count)."""
        return [*self.text0.values(), *self.text1.values(), *self.model.state_dict().values(),
                *(t for head in self._heads.values() for t in head)]

    def state_at(self, alpha: float) -> dict[str, torch.Tensor]:
        """The interpolated text tower (1 − α)·text₀ + α·text₁, one lerp per tensor (a copy)."""
        return {k: torch.lerp(self.text0[k], self.text1[k], float(alpha)) for k in self.text0}

    def head_at(self, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's weight (C, D) and bias (C,) at α: the zero-shot head of the interpolated text tower."""
        alpha = float(alpha)
        with self._lock:
            if alpha in self._heads:
                self._heads.move_to_end(alpha)
                return self._heads[alpha]
            entries = dict(self.model.state_dict(keep_vars=True))
            with torch.no_grad():
                for key, value in self.text0.items():
                    torch.lerp(value, self.text1[key], alpha, out=entries[key].data)
            identity = {**self.identity, "text_alpha": repr(alpha)}
            head = cached_zero_shot_head(self.model, self.tokenizer, self.classnames, self.templates, identity,
                                         self.cache if self.identity else None, self.device)
            self.built += 1
            self._heads[alpha] = (head.weight.detach(), head.bias.detach())
            while len(self._heads) > KEPT_HEADS:
                self._heads.popitem(last=False)
            return self._heads[alpha]
