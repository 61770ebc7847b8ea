"""Model Stock (Jang et al., ECCV 2024): label-free, per tensor, from k ≥ 2 fine-tuned endpoints sharing θ₀.

Per tensor (layer): cos θ between the task vectors τᵢ = θᵢ − θ₀ (for k > 2 the mean of the pairwise cosines),
t = k·cos θ / ((k − 1)·cos θ + 1), and Model Stock's point θ_MS = t·mean(θᵢ) + (1 − t)·θ₀. With α the path runs
from θ₀ to that point: θ = θ₀ + α·t·(mean(θᵢ) − θ₀) = (1 − α·t)·θ₀ + (α·t/k)·Σθᵢ, written per tensor slice.
A tensor whose task vectors are zero (it was not fine-tuned) gets cos θ = 0, so t = 0: it stays θ₀.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import torch

from .base import Cost, Flat, MergeInputs, MergeMethod, mix_into

EPS = 1e-12


def stock_ratio(cos: float, k: int) -> float:
    """t = k·cos / ((k − 1)·cos + 1), the paper's interpolation ratio for k endpoints at angle cos."""
    return k * cos / ((k - 1) * cos + 1)


def mean_pairwise_cosine(task_vectors: list[torch.Tensor]) -> float:
    """The cosine between two task vectors, or for k > 2 the mean over every pair."""
    cosines = []
    for a, b in itertools.combinations(task_vectors, 2):
        a64, b64 = a.double(), b.double()
        norms = float(a64.norm() * b64.norm())
        cosines.append(float(a64 @ b64) / norms if norms > EPS else 0.0)
    return sum(cosines) / len(cosines)


def layer_ratios(inputs: MergeInputs) -> dict[str, float]:
    """Model Stock's t for every tensor, by name (computed once per inputs)."""
    def compute() -> dict[str, float]:
        k, ratios = len(inputs.endpoints), {}
        for views in inputs.tensors():
            cos = mean_pairwise_cosine([e.reshape(-1) - views.theta0.reshape(-1) for e in views.endpoints])
            ratios[views.slice.name] = stock_ratio(cos, k)
        return ratios
    return inputs.remember("model-stock-ratios", compute)


def overall_ratio(inputs: MergeInputs) -> float:
    """One label-free α for WiSE-FT: the per-tensor t averaged with each tensor's size as its weight."""
    ratios = layer_ratios(inputs)
    return sum(ratios[sl.name] * sl.numel for sl in inputs.layout) / max(inputs.num_weights, 1)


class ModelStock(MergeMethod):
    name = "model-stock"
    title = "Model Stock"
    summary = "per-layer ratio from the angle between ≥ 2 task vectors, no labels (Jang et al., ECCV 2024)"
    min_endpoints = 2

    def build(self, inputs: MergeInputs, values: Mapping[str, Any], out: Flat) -> None:
        ratios, alpha, k = layer_ratios(inputs), float(values["alpha"]), len(inputs.endpoints)
        for views in inputs.tensors(out):
            step = alpha * ratios[views.slice.name]
            mix_into(views.out, [(views.theta0, 1.0 - step), *((e, step / k) for e in views.endpoints)])

    def cost(self, inputs: MergeInputs) -> Cost:
        return Cost(passes=2.0 + len(inputs.endpoints))
