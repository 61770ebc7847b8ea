"""WiSE-FT itself: θ_α = (1 − α)·θ₀ + α·θ₁, one lerp over each flat buffer (the first method, and the yardstick)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .base import Cost, Flat, MergeInputs, MergeMethod


class WiseFT(MergeMethod):
    name = "wiseft"
    title = "WiSE-FT"
    summary = "the straight line (1 − α)·θ₀ + α·θ₁ (Wortsman et al., 2022)"

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        for dtype, target in out.items():
            # lerp is exact at the endpoints: α = 0 gives θ₀ and α = 1 gives θ₁ bit for bit.
            torch.lerp(inputs.theta0[dtype], inputs.endpoints[0][dtype], float(values["alpha"]), out=target)

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=3.0)
