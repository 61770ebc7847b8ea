"""Weight space: theta_alpha = (1 - alpha) * theta_0 + alpha * theta_1 as one lerp over flat buffers."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import nn

from ..experiment.spec import HEAD_POLICIES
from .models import ImageClassifier
from .text_heads import TextHeads

HEAD_KEYS = ("head.weight", "head.bias")


def _float_entries(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every floating-point parameter and buffer, in state_dict order (BN running stats included)."""
    return [(k, v) for k, v in module.state_dict(keep_vars=True).items() if v.is_floating_point()]


def _flatten(entries: list[tuple[str, torch.Tensor]]) -> dict[torch.dtype, torch.Tensor]:
    """One contiguous copy per dtype (normally a single fp32 buffer)."""
    groups: dict[torch.dtype, list[torch.Tensor]] = {}
    for _, tensor in entries:
        groups.setdefault(tensor.dtype, []).append(tensor.detach().reshape(-1))
    return {dtype: torch.cat(parts) for dtype, parts in groups.items()}


def _rebind(module: nn.Module, flats: dict[torch.dtype, torch.Tensor]) -> None:
    """Make every float parameter/buffer of `module` a view into `flats`, so writing flats updates the model."""
    offsets = dict.fromkeys(flats, 0)
    for name, tensor in _float_entries(module):
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        offset, n = offsets[tensor.dtype], tensor.numel()
        view = flats[tensor.dtype][offset:offset + n].view(tensor.shape)
        view.copy_(tensor.detach())
        offsets[tensor.dtype] = offset + n
        if attr in owner._parameters:
            owner._parameters[attr].data = view
        else:
            owner._buffers[attr] = view


@dataclass
class Working:
    """A per-session model whose weights live in its own flat buffers."""

    model: ImageClassifier
    flats: dict[torch.dtype, torch.Tensor]
    alpha: float | None = None
    path: str = ""  # which path alpha is on: "" for this straight line, else a merge method's (core.merging.space)


class WeightSpace:
    """The line through zero-shot and fine-tuned weights; read-only, shareable across sessions."""

    def __init__(self, zeroshot: ImageClassifier, finetuned: ImageClassifier, head_policy: str = "interpolate",
                 text: TextHeads | None = None) -> None:
        if head_policy not in HEAD_POLICIES:
            raise ValueError(f"head_policy must be one of {', '.join(HEAD_POLICIES)}, got {head_policy!r}")
        if head_policy == "auto":  # the text tower's heads where the endpoints give one, else the lerp of the heads
            head_policy = "text" if text is not None else "interpolate"
        if head_policy == "text" and text is None:
            raise ValueError("head_policy 'text' builds θ_α's head from the interpolated text tower, but the "
                             "fine-tuned endpoint carries none (only FLYP checkpoints do): use 'auto' or "
                             "'interpolate'")
        # "text": the flat buffers still lerp the heads; interpolate_into then writes the text tower's head over them.
        self.text = text if head_policy == "text" else None
        names0 = [k for k, _ in _float_entries(zeroshot)]
        if names0 != [k for k, _ in _float_entries(finetuned)]:
            raise ValueError("zero-shot and fine-tuned classifiers have different parameter layouts")
        self.head_policy = head_policy
        self._template = zeroshot  # never mutated: non-float tensors (e.g. BN counters) come from it
        self.theta0 = _flatten(_float_entries(zeroshot))
        self.theta1 = _flatten(_float_entries(finetuned))
        if head_policy in ("zeroshot", "finetuned"):
            # Fix the head at one endpoint by making both endpoints agree on the head's slice.
            src, dst = (self.theta0, self.theta1) if head_policy == "zeroshot" else (self.theta1, self.theta0)
            for dtype, start, stop in self._head_slices(zeroshot):
                dst[dtype][start:stop] = src[dtype][start:stop]
        for flat in (*self.theta0.values(), *self.theta1.values()):
            flat.requires_grad_(False)
        self._default: Working | None = None

    @staticmethod
    def _slices(model: nn.Module) -> list[tuple[str, torch.dtype, int, int]]:
        """Where each float entry lies in its dtype's flat buffer: (name, dtype, start, stop)."""
        slices, offsets = [], dict[torch.dtype, int]()
        for name, tensor in _float_entries(model):
            start = offsets.get(tensor.dtype, 0)
            offsets[tensor.dtype] = start + tensor.numel()
            slices.append((name, tensor.dtype, start, start + tensor.numel()))
        return slices

    @classmethod
    def _head_slices(cls, model: nn.Module) -> list[tuple[torch.dtype, int, int]]:
        return [(dtype, start, stop) for name, dtype, start, stop in cls._slices(model) if name in HEAD_KEYS]

    @cached_property
    def shared_tower(self) -> bool:
        """Whether both endpoints have the same image tower, bit for bit (a linear classifier, a probe): then every
        theta_alpha has it too (lerp(a, a, alpha) is a), and only the head changes along the line."""
        return all(torch.equal(self.theta0[dtype][start:stop], self.theta1[dtype][start:stop])
                   for name, dtype, start, stop in self._slices(self._template) if name not in HEAD_KEYS)

    def head_at(self, alpha: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The head's weight and bias at theta_alpha, the same values interpolate_into writes, alone."""
        if self._text_head(alpha):
            assert self.text is not None
            return self.text.head_at(alpha)
        parts = {name: torch.lerp(self.theta0[dtype][start:stop], self.theta1[dtype][start:stop], float(alpha))
                 for name, dtype, start, stop in self._slices(self._template) if name in HEAD_KEYS}
        return parts["head.weight"].view(self._template.head.weight.shape), parts.get("head.bias")

    @property
    def num_weights(self) -> int:
        """Number of interpolated scalars."""
        return sum(f.numel() for f in self.theta0.values())

    def new_working(self) -> Working:
        """A fresh working model (its own memory) for one session; starts at alpha = 0."""
        model = copy.deepcopy(self._template).eval().requires_grad_(False)
        flats = {dtype: torch.empty_like(flat) for dtype, flat in self.theta0.items()}
        _rebind(model, flats)
        working = Working(model, flats)
        self.interpolate_into(working, 0.0)
        return working

    def interpolate_into(self, working: Working, alpha: float) -> ImageClassifier:
        """Write theta_alpha into a working model in place (alpha outside [0, 1] extrapolates)."""
        alpha = float(alpha)
        if not math.isfinite(alpha):  # NaN/inf would silently turn every weight into NaN
            raise ValueError(f"alpha must be a finite number, got {alpha}")
        if working.alpha != alpha or working.path:
            with torch.no_grad():
                for dtype, out in working.flats.items():
                    # lerp is exact at the endpoints: alpha=0 gives theta_0, alpha=1 gives theta_1 bit for bit.
                    torch.lerp(self.theta0[dtype], self.theta1[dtype], alpha, out=out)
                if self._text_head(alpha):
                    self._write_text_head(working, alpha)
            working.alpha, working.path = alpha, ""
        return working.model

    def _text_head(self, alpha: float) -> bool:
        """Whether θ_α's head comes from the interpolated text tower: under policy "text", except at the endpoints,
        where that tower is text₀ or text₁ exactly and its head is the endpoint's own (kept bit for bit)."""
        return self.text is not None and float(alpha) not in (0.0, 1.0)

    def _write_text_head(self, working: Working, alpha: float) -> None:
        """Write the text tower's head at alpha over the head's slices of a working model's flat buffers."""
        assert self.text is not None
        weight, bias = self.text.head_at(alpha)
        for name, dtype, start, stop in self._slices(self._template):
            if name in HEAD_KEYS:
                working.flats[dtype][start:stop] = (weight if name == "head.weight" else bias).reshape(-1)

    @property
    def working(self) -> ImageClassifier:
        """The default working model (for scripts; sessions should use new_working())."""
        if self._default is None:
            self._default = self.new_working()
        return self._default.model

    def set_alpha(self, alpha: float) -> ImageClassifier:
        """Interpolate into the default working model and return it."""
        if self._default is None:
            self._default = self.new_working()
        return self.interpolate_into(self._default, alpha)

    def state_at(self, alpha: float) -> dict[str, torch.Tensor]:
        """A standalone copy of the classifier's state dict at alpha (for export)."""
        working = self.new_working()
        self.interpolate_into(working, alpha)
        return {k: v.detach().clone() for k, v in working.model.state_dict().items()}


def flat_policy(head_policy: str) -> str:
    """The head policy of a weight space built without a text tower (another endpoint merged as flat tensors)."""
    return "interpolate" if head_policy in ("auto", "text") else head_policy


def interpolate_state_dicts(theta0: dict[str, torch.Tensor], theta1: dict[str, torch.Tensor],
                            alpha: float) -> dict[str, torch.Tensor]:
    """The paper code's way (a dict comprehension); kept as the reference for tests and the benchmark."""
    return {k: (1 - alpha) * theta0[k] + alpha * theta1[k] if theta0[k].is_floating_point() else theta0[k]
            for k in theta0}
