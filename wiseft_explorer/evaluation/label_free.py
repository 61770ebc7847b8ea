"""Label-free choices of α for WiSE-FT: Model Stock's ratio and DaWin's entropy weighting.

- Model Stock (≥ 2 endpoints sharing θ₀): the per-tensor ratio t averaged with each tensor's size as its weight.
- DaWin (Oh et al., 2024): per image, λ(x) = e^{−H₁(x)} / (e^{−H₀(x)} + e^{−H₁(x)}), H the entropy of an
  endpoint's softmax; reported as its mean over the unlabelled ID images (an α), and as the accuracy of the
  per-image output mix (1 − λ(x))·p₀(x) + λ(x)·p₁(x). It reads the class probabilities the sweep keeps at α = 0
  and α = 1 (kept for label sets small enough, see stream_state), so the mix is of probabilities, not logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.merging.model_stock import overall_ratio
from .runtime import ExperimentRuntime
from .sweep_result import SweepResult


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ p log p per row (0·log 0 = 0)."""
    p = probs.double()
    return -(p * p.clamp_min(1e-300).log()).sum(dim=-1)


def dawin_weights(probs0: torch.Tensor, probs1: torch.Tensor) -> torch.Tensor:
    """λ(x) = e^{−H₁} / (e^{−H₀} + e^{−H₁}) per row, computed stably as a sigmoid of H₀ − H₁."""
    return torch.sigmoid(entropy(probs0) - entropy(probs1))


@dataclass(frozen=True)
class DaWin:
    """DaWin on one set: the mean λ (a label-free α) and the per-image mix's top-1."""

    mean_lambda: float
    mix_top1: float
    images: int


def dawin(probs0: torch.Tensor, probs1: torch.Tensor, labels: torch.Tensor) -> DaWin:
    """DaWin's weighting of two endpoints' class probabilities (N, C), scored against `labels` (N,)."""
    lam = dawin_weights(probs0, probs1)
    mix = (1 - lam)[:, None] * probs0.double() + lam[:, None] * probs1.double()
    correct = mix.argmax(dim=-1) == labels
    return DaWin(float(lam.mean()), float(correct.double().mean()), len(labels))


def dawin_from_sweep(runtime: ExperimentRuntime, result: SweepResult, set_name: str | None = None) -> DaWin:
    """DaWin on a set of a sweep (default the ID set) from its probabilities at α = 0 and α = 1."""
    name = set_name or result.id_set
    by_alpha = result.predictions.get(name, {})
    ends = [by_alpha.get(a) for a in (0.0, 1.0)]
    if any(p is None or p.probs is None for p in ends):
        raise ValueError(f"{name}: DaWin needs the class probabilities at α = 0 and α = 1, which this sweep did not "
                         "keep: sweep with both ends in --alphas (the label set must be small enough to keep them)")
    zero, one = ends[0], ends[1]
    assert zero is not None and one is not None and zero.probs is not None and one.probs is not None
    if not torch.equal(zero.index, one.index):
        raise ValueError(f"{name}: the two ends were evaluated on different images; run the sweep to its end first")
    labels = runtime.eval_set(name).labels[zero.index]
    return dawin(zero.probs.float(), one.probs.float(), labels.long())


def model_stock_alpha(runtime: ExperimentRuntime) -> float | None:
    """Model Stock's label-free α (None with fewer than 2 endpoints sharing θ₀)."""
    from .merging import endpoints

    inputs = endpoints(runtime).inputs
    return overall_ratio(inputs) if len(inputs.endpoints) >= 2 else None
