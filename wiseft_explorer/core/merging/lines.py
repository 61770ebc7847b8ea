"""Per-depth α (LiNeS, Wang et al., ICLR 2025): α(ℓ) = α + β·(ℓ − 1)/(L − 1) over the image tower's depth.

Depth ℓ of a tensor, by its name in the classifier (image tower `visual.*` + `head.*`), L = blocks + 2:
- ℓ = 1, the stem: everything before the first block (ViT: conv1, class_embedding, positional_embedding, ln_pre;
  ModifiedResNet: conv1-3, bn1-3);
- ℓ = 2 … L − 1, one per block: ViT `visual.transformer.resblocks.N`, ModifiedResNet `visual.layerN` (a stage);
- ℓ = L, the head end: ViT ln_post and proj, ModifiedResNet attnpool, and the classification head.
A tower with no recognised blocks has L = 2: stem at α, head end at α + β. θ = lerp(θ₀, θ₁, α(ℓ)) per tensor.
`build_per_depth` takes any α per depth; `offsets` (the expert view's one slider per block group) set
α(ℓ) = α + offset(ℓ) in place of β's line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .base import ALPHA, Cost, Flat, MergeError, MergeInputs, MergeMethod, ParamSpec

BETA = ParamSpec("beta", "β", 0.0, -1.0, 1.0, 0.01, help="added to α at the head end, linearly in depth")
OFFSETS = ParamSpec("offsets", "α offset per depth", "",
                    help="the expert view: α(ℓ) = α + offset(ℓ), comma separated from stem to head end; "
                         "empty: β's line")
_BLOCK = re.compile(r"^visual\.(?:transformer\.resblocks\.(\d+)|layer(\d+))\.")
_HEAD_END = ("head.", "visual.ln_post.", "visual.proj", "visual.attnpool.")


def depths(names: Sequence[str]) -> tuple[dict[str, int], int]:
    """Each tensor's depth ℓ (1 … L) and L."""
    blocks = sorted({int(next(g for g in m.groups() if g is not None)) for n in names if (m := _BLOCK.match(n))})
    rank = {block: i + 2 for i, block in enumerate(blocks)}
    last = len(blocks) + 2
    found = {}
    for name in names:
        match = _BLOCK.match(name)
        if match:
            found[name] = rank[int(next(g for g in match.groups() if g is not None))]
        else:
            found[name] = last if name.startswith(_HEAD_END) else 1
    return found, last


def lines_alphas(alpha: float, beta: float, depth_count: int) -> list[float]:
    """α(ℓ) for ℓ = 1 … L."""
    span = max(depth_count - 1, 1)
    return [alpha + beta * (level - 1) / span for level in range(1, depth_count + 1)]


def parse_offsets(text: str) -> list[float]:
    """The expert view's offsets, "0,0.1,0.25" -> [0.0, 0.1, 0.25] (empty text: none)."""
    try:
        return [float(part) for part in text.split(",")] if text.strip() else []
    except ValueError as err:
        raise MergeError(f"offsets must be numbers separated by commas, one per depth, got {text!r}") from err


def build_per_depth(inputs: MergeInputs, alphas: Sequence[float], out: Flat) -> None:
    """θ = lerp(θ₀, θ₁, alphas[ℓ − 1]) for every tensor at depth ℓ; a block's tensors lie side by side in the flat
    buffer, so each run of them is one lerp (a dozen for ViT-B/32, not one per tensor)."""
    level, count = inputs.remember("depths", lambda: depths([sl.name for sl in inputs.layout]))
    if len(alphas) != count:
        raise MergeError(f"this tower has {count} depths (stem, {count - 2} blocks, head end); got {len(alphas)} α")
    runs: list[list] = []  # [dtype, start, stop, depth]
    for sl in inputs.layout:
        if runs and runs[-1][0] == sl.dtype and runs[-1][2] == sl.start and runs[-1][3] == level[sl.name]:
            runs[-1][2] = sl.stop
        else:
            runs.append([sl.dtype, sl.start, sl.stop, level[sl.name]])
    for dtype, start, stop, depth in runs:
        torch.lerp(inputs.theta0[dtype][start:stop], inputs.endpoints[0][dtype][start:stop],
                   float(alphas[depth - 1]), out=out[dtype][start:stop])


class LiNeS(MergeMethod):
    name = "lines"
    title = "Per-depth α (LiNeS)"
    summary = "α grows linearly with depth: α at the stem, α + β at the head (Wang et al., ICLR 2025)"
    params = (ALPHA, BETA, OFFSETS)

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        count = inputs.remember("depths", lambda: depths([sl.name for sl in inputs.layout]))[1]
        alpha, offsets = float(values["alpha"]), parse_offsets(str(values.get("offsets") or ""))
        alphas = [alpha + o for o in offsets] if offsets else lines_alphas(alpha, float(values["beta"]), count)
        build_per_depth(inputs, alphas, out)

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=3.0)
