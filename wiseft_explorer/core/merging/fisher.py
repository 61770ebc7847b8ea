"""Fisher merging as the paper's code does it (src/wise_ft.py: _merge), on the flat buffers per tensor slice.

θ = ((1 − α)·F₀·θ₀ + α·F₁·θ₁) / ((1 − α)·F₀ + α·F₁), each F floored at `fisher_floor` (the paper's default 1e-8);
a tensor without a Fisher (a buffer, or a parameter that had no gradient) uses ones, i.e. the plain lerp. The
Fishers are the inputs' `fishers` (see fisher_estimate for how they are computed and filled with ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .base import ALPHA, Cost, Flat, MergeInputs, MergeMethod, ParamSpec

FLOOR = ParamSpec("fisher_floor", "Fisher floor", 1e-8, 0.0, 1.0, help="the least Fisher value (the paper's 1e-8)")


class FisherMerge(MergeMethod):
    name = "fisher"
    title = "Fisher merging"
    summary = "each weight pulled towards the endpoint whose diagonal Fisher is larger (the paper's option)"
    params = (ALPHA, FLOOR)
    needs_fishers = True

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        assert inputs.fishers is not None  # check() refuses inputs without them
        alpha, floor = float(values["alpha"]), float(values["fisher_floor"])
        fisher0, fisher1 = inputs.fishers
        for views in inputs.tensors(out):
            cut = slice(views.slice.start, views.slice.stop)
            c0 = fisher0[views.slice.dtype][cut].clamp_min(floor).mul_(1.0 - alpha)
            c1 = fisher1[views.slice.dtype][cut].clamp_min(floor).mul_(alpha)
            numerator = c0 * views.theta0 + c1 * views.endpoints[0]
            torch.div(numerator, c0.add_(c1), out=views.out)

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=9.0)
