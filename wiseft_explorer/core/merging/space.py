"""A merge method's path as a weight space: what the engine, the sweep and the export already drive.

`MergedSpace` is a `WeightSpace` whose α runs along a method's path instead of the straight line: the streaming
engine calls `interpolate_into(working, α)` per batch as before, and `state_at` exports θ as before.
"""

from __future__ import annotations

import json
import math

import torch

from ..interpolate import WeightSpace, Working
from ..models import ImageClassifier
from .base import MergeInputs, flat_layout
from .registry import MethodChoice


def merge_inputs(space: WeightSpace, others: list[dict[torch.dtype, torch.Tensor]] | None = None,
                 names: list[str] | None = None) -> MergeInputs:
    """θ₀ and θ₁ of a weight space (its head policy applied), then any other endpoints' flat buffers."""
    return MergeInputs(space.theta0, [space.theta1, *(others or [])], flat_layout(space._template), names or [])


class MergedSpace(WeightSpace):
    """The path α ↦ θ(α) of one method with fixed parameters; read-only and shareable like WeightSpace."""

    def __init__(self, base: WeightSpace, inputs: MergeInputs, choice: MethodChoice) -> None:  # noqa: D107
        self.__dict__.update({k: v for k, v in base.__dict__.items() if k != "_default"})
        self._default = None
        self.text = None  # a method's path merges the heads as flat tensors (for FLYP: the heads' approximation)
        self.inputs, self.choice = inputs, choice
        choice.method.check(inputs)
        self.path = json.dumps(choice.key() or {}, sort_keys=True, default=str)

    @property
    def shared_tower(self) -> bool:
        """Never: a method may move the tower where the line would not (LiNeS' per-depth α, another endpoint's
        tower in a soup), so the engine must not take the features-once path, whose heads are the line's."""
        return False

    def interpolate_into(self, working: Working, alpha: float) -> ImageClassifier:
        """Write the method's θ at α into a working model in place."""
        alpha = float(alpha)
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be a finite number, got {alpha}")
        if working.alpha != alpha or working.path != self.path:
            with torch.no_grad():
                self.choice.method.build(self.inputs, self.choice.values(alpha), working.flats)
            working.alpha, working.path = alpha, self.path
        return working.model
