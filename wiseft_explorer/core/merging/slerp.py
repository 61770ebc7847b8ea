"""SLERP between θ₀ and θ₁, per tensor: the arc between the two weight vectors of each tensor at fraction α.

Ω = arccos(cos(θ₀, θ₁)) of the tensor's flattened weights; θ = sin((1 − α)Ω)/sin Ω · θ₀ + sin(αΩ)/sin Ω · θ₁ on the
unnormalised weights (as mergekit's slerp does). Where the vectors are nearly parallel (|cos| > PARALLEL) the arc
is a line and the lerp is used. The angles depend on the endpoints only and are computed once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from .base import Cost, Flat, MergeInputs, MergeMethod, mix_into

PARALLEL = 0.9995


def tensor_angles(inputs: MergeInputs) -> dict[str, float | None]:
    """Ω per tensor, or None where θ₀ and θ₁ are (nearly) parallel or one is zero."""
    def compute() -> dict[str, float | None]:
        angles: dict[str, float | None] = {}
        for views in inputs.tensors():
            a, b = views.theta0.reshape(-1).double(), views.endpoints[0].reshape(-1).double()
            norms = float(a.norm() * b.norm())
            cos = float(a @ b) / norms if norms > 0 else 1.0
            angles[views.slice.name] = None if abs(cos) > PARALLEL else math.acos(max(-1.0, min(1.0, cos)))
        return angles
    return inputs.remember("slerp-angles", compute)


def slerp_weights(omega: float | None, alpha: float) -> tuple[float, float]:
    """The coefficients of θ₀ and θ₁ at fraction α of the arc Ω (the lerp's where Ω is None)."""
    if omega is None:
        return 1.0 - alpha, alpha
    sin = math.sin(omega)
    return math.sin((1.0 - alpha) * omega) / sin, math.sin(alpha * omega) / sin


class Slerp(MergeMethod):
    name = "slerp"
    title = "SLERP"
    summary = "spherical interpolation between θ₀ and θ₁, per tensor (linear where they are nearly parallel)"

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        angles, alpha = tensor_angles(inputs), float(values["alpha"])
        for views in inputs.tensors(out):
            omega = angles[views.slice.name]
            if omega is None:
                torch.lerp(views.theta0, views.endpoints[0], alpha, out=views.out)
            else:
                w0, w1 = slerp_weights(omega, alpha)
                mix_into(views.out, [(views.theta0, w0), (views.endpoints[0], w1)])

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=3.0)
