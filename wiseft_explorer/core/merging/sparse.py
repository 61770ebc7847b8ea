"""Sparse task vectors for one pair: θ = θ₀ + α·τ̃, with τ = θ₁ − θ₀ thinned to a density.

- TIES trim (Yadav et al., NeurIPS 2023): keep the top-`density` fraction of |τ|. The TIES paper's code trims the
  whole flattened task vector at once (one threshold per model: `topk_values_mask` on `state_dict_to_vector`);
  `scope = "global"` does that, `scope = "tensor"` trims each tensor on its own (as mergekit does). Its threshold
  is the TIES code's: the (n − ⌊n·density⌋)-th smallest |τ|, keeping |τ| ≥ it (so ⌊n·density⌋ + 1
  entries when the magnitudes are distinct, ties all kept, as that code does).
- DARE (Yu et al., ICML 2024): keep each entry with probability `density` (seeded) and rescale the kept ones by
  1/density = 1/(1 − p), p the drop rate.
Both run per tensor slice; the global threshold is found once per density (one temporary |τ| while it is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from .base import ALPHA, Cost, Flat, MergeInputs, MergeMethod, ParamSpec

DENSITY = ParamSpec("density", "density", 0.2, 0.01, 1.0, 0.01, help="fraction of the task vector kept")
SCOPE = ParamSpec("scope", "trim over", "global", choices=("global", "tensor"),
                  help="one threshold for the whole model (the TIES code) or one per tensor")
SEED = ParamSpec("seed", "seed", 0, 0, 2**31 - 1, 1, integer=True, help="the random keep's seed")


def trim_threshold(magnitudes: torch.Tensor, density: float) -> float | None:
    """The TIES code's threshold on |τ|: keep entries ≥ it (None: keep everything)."""
    n = magnitudes.numel()
    drop = n - int(n * density)
    if drop <= 0:
        return None
    return float(magnitudes.reshape(-1).float().kthvalue(drop).values)


def _add_kept(views_out: torch.Tensor, theta0: torch.Tensor, tau: torch.Tensor, keep: torch.Tensor,
              scale: float) -> None:
    """out = θ₀ + scale·(τ where kept)."""
    torch.add(theta0, tau.mul_(keep), alpha=scale, out=views_out)


class TiesTrim(MergeMethod):
    name = "ties-trim"
    title = "Sparse task vector (TIES trim)"
    summary = "keep the largest task-vector entries, then θ₀ + α·τ̃ (Yadav et al., NeurIPS 2023)"
    params = (ALPHA, DENSITY, SCOPE)

    def _global(self, inputs: MergeInputs, density: float) -> float | None:
        def compute() -> float | None:
            magnitudes = torch.cat([(v.endpoints[0] - v.theta0).abs_().float() for v in inputs.tensors()])
            return trim_threshold(magnitudes, density)
        return inputs.remember(("ties-threshold", density), compute)

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        density, alpha = float(values["density"]), float(values["alpha"])
        shared = self._global(inputs, density) if values["scope"] == "global" else None
        for views in inputs.tensors(out):
            tau = views.endpoints[0] - views.theta0
            threshold = shared if values["scope"] == "global" else trim_threshold(tau.abs(), density)
            keep = torch.ones_like(tau) if threshold is None else (tau.abs() >= threshold).to(tau.dtype)
            _add_kept(views.out, views.theta0, tau, keep, alpha)

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=6.0)


class Dare(MergeMethod):
    name = "dare"
    title = "Sparse task vector (DARE)"
    summary = "keep a seeded random fraction of the task vector, rescaled by 1/(1 − p) (Yu et al., ICML 2024)"
    params = (ALPHA, DENSITY, SEED)

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        density, alpha = float(values["density"]), float(values["alpha"])
        generators: dict[torch.device, torch.Generator] = {}
        for views in inputs.tensors(out):
            device = views.out.device
            if device not in generators:
                generators[device] = torch.Generator(device=device).manual_seed(int(values["seed"]))
            tau = views.endpoints[0] - views.theta0
            keep = (torch.rand(tau.shape, generator=generators[device], device=device) < density).to(tau.dtype)
            _add_kept(views.out, views.theta0, tau, keep, alpha / density)

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=6.0)
