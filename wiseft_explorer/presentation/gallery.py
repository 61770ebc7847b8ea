"""Gallery logic (no UI): per-image predictions of zero-shot, theta_alpha and fine-tuned, and the gallery filters."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from ..evaluation.sweep_result import Predictions, SweepResult
from ..results.curves import ALPHA_TOL

FILTERS: dict[str, str] = {
    "all": "All images",
    "fixed": "Fixed by fine-tuning (zero-shot wrong, fine-tuned right)",
    "broken": "Broken by fine-tuning (zero-shot right, fine-tuned wrong)",
    "rescued": "Rescued by WiSE-FT (right at α, wrong at zero-shot or fine-tuned)",
    "changed": "Changed near α (prediction flips within one grid step of α)",
}


def neighbours(result: SweepResult, alpha: float) -> list[float]:
    """Grid alphas within one grid step of alpha (at least the two nearest, e.g. when extrapolating)."""
    grid = sorted(result.alphas)
    step = min((b - a for a, b in zip(grid, grid[1:], strict=False)), default=1.0)
    near = [a for a in grid if abs(a - alpha) <= step + ALPHA_TOL]
    return near if len(near) >= 2 else sorted(sorted(grid, key=lambda a: abs(a - alpha))[:2])


def _rows(preds: Predictions, common: torch.Tensor) -> torch.Tensor:
    """The predictions of the images in `common` (ascending set indices), in that order."""
    return preds.pred[torch.isin(preds.index, common)].long()


def gallery_frame(result: SweepResult, set_name: str, alpha: float, labels: torch.Tensor,
                  classnames: Sequence[str], live: Predictions | None = None) -> pd.DataFrame:
    """One row per image evaluated: true class, the three predictions, correctness, whether it flips near alpha.

    Grid alphas read the sweep's predictions unless `live` is given (the set evaluated at alpha, maybe on a sample:
    an off-grid alpha, or a merge method's θ at alpha), which an off-grid alpha needs. While a sweep streams, only the images evaluated so far (at every alpha involved) have rows.
    """
    preds = result.predictions[set_name]
    on_grid = result.grid_alpha(alpha)
    if live is not None:
        at = live
    elif on_grid is not None:
        at = preds[on_grid]
    else:
        raise ValueError(f"α = {alpha:g} is not on the sweep grid; pass its live predictions")
    if 0.0 not in preds or 1.0 not in preds:
        raise ValueError("the sweep lacks an endpoint (α = 0 or α = 1); run the full sweep first")
    near = [preds[a] for a in neighbours(result, alpha)]
    common = at.index
    for other in (preds[0.0], preds[1.0], *near):
        common = common[torch.isin(common, other.index)]
    zs, ft, at_alpha = _rows(preds[0.0], common), _rows(preds[1.0], common), _rows(at, common)
    # "Near alpha": the grid neighbours plus alpha itself; a flip anywhere among them counts.
    stacked = torch.stack([_rows(p, common) for p in near] + [at_alpha])
    changed = (stacked != stacked[0]).any(dim=0)
    truth = labels[common]
    names = list(classnames)
    return pd.DataFrame({
        "index": common.tolist(),
        "true": [names[i] for i in truth.tolist()],
        "zeroshot": [names[i] for i in zs.tolist()],
        "alpha": [names[i] for i in at_alpha.tolist()],
        "finetuned": [names[i] for i in ft.tolist()],
        "zeroshot_ok": (zs == truth).tolist(),
        "alpha_ok": (at_alpha == truth).tolist(),
        "finetuned_ok": (ft == truth).tolist(),
        "changed_near_alpha": changed.tolist(),
    })


def apply_filter(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of a gallery frame that match one of FILTERS."""
    if name == "all":
        return frame
    if name == "fixed":
        mask = ~frame.zeroshot_ok & frame.finetuned_ok
    elif name == "broken":
        mask = frame.zeroshot_ok & ~frame.finetuned_ok
    elif name == "rescued":
        mask = frame.alpha_ok & ~(frame.zeroshot_ok & frame.finetuned_ok)
    elif name == "changed":
        mask = frame.changed_near_alpha
    else:
        raise ValueError(f"unknown gallery filter {name!r}; use one of {', '.join(FILTERS)}")
    return frame[mask]


def filter_counts(frame: pd.DataFrame) -> dict[str, int]:
    """How many images each filter keeps (shown next to the filter names)."""
    return {name: len(apply_filter(frame, name)) for name in FILTERS}
