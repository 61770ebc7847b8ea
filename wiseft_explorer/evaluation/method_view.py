"""What the app shows of the merge methods: which ones an experiment can use (and why not), a method's path and its
point at α on a fair sample, Model Stock's per-layer t, LiNeS' depth groups, and the label-free α choices.

A method's path is evaluated at PATH_ALPHAS (plus the session's α) on the first PATH_IMAGES images of each set's
fair order, in a working model the caller borrows from the runtime's pool; the results are cached on disk like
any sweep entry (the method and its parameters are part of the key), so a control moved back is read, not
evaluated. The labelled choices need the full curves; the label-free ones need no labels: Model Stock's ratio
(≥ 2 endpoints sharing θ₀) and DaWin's mean λ (the probabilities a finished full-grid sweep kept at α = 0 and 1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.interpolate import Working
from ..core.merging.base import ParamSpec
from ..core.merging.lines import depths
from ..core.merging.model_stock import layer_ratios
from ..core.merging.registry import PLAIN, methods
from ..results.curves import Curves
from ..store.cache import DiskCache
from .fisher import DEFAULT_IMAGES, fisher_paths, fisher_set
from .label_free import dawin_from_sweep, model_stock_alpha
from .merging import endpoints, with_method
from .runtime import ExperimentRuntime
from .sweep import cached_sweep, run_sweep

PATH_ALPHAS = (0.0, 0.5, 1.0)  # where a method's path is drawn (the session's α is added)
PATH_IMAGES = 100  # per set: a fair sample, so that moving a control answers in seconds on the demo
BETA_PATH = (-0.5, -0.25, 0.0, 0.25, 0.5)  # LiNeS: the β values of "the path of β at the current α"


@dataclass(frozen=True)
class MethodOption:
    """A registered method as the picker lists it; `reason` says why this experiment cannot use it (None: usable)."""

    name: str
    title: str
    summary: str
    params: tuple[ParamSpec, ...]
    reason: str | None = None


def fishers_ready(runtime: ExperimentRuntime) -> bool:
    """Whether `wiseft-explorer fisher` has cached θ₀'s and θ₁'s Fishers for this experiment (nothing computed)."""
    return all(path.is_file() for path in fisher_paths(runtime, fisher_set(runtime), DEFAULT_IMAGES))


def fisher_hint(runtime: ExperimentRuntime) -> str:
    """The one line that says how to make Fisher merging available."""
    path = runtime.experiment.path
    return (f"needs the Fishers of θ₀ and θ₁: compute them with `wiseft-explorer fisher --experiment "
            f"{Path(path).name if path else 'FILE'}`")


def method_options(runtime: ExperimentRuntime) -> list[MethodOption]:
    """Every registered method, WiSE-FT first, each with why it is unavailable here (too few endpoints, no Fisher)."""
    count = len(endpoints(runtime).inputs.endpoints)
    options = []
    for name, method in methods().items():
        reason = None
        if count < method.min_endpoints:
            reason = (f"needs ≥ {method.min_endpoints} fine-tuned endpoints from the same θ₀; this experiment has "
                      f"{count} (add [[finetuned]] tables)")
        elif method.needs_fishers and not fishers_ready(runtime):
            reason = fisher_hint(runtime)
        options.append(MethodOption(name, method.title or name, method.summary, method.params, reason))
    return options


def plotted_sets(runtime: ExperimentRuntime) -> list[str]:
    """The sets the plots and cards read: the ID set and the shifts (the held-out split is not drawn)."""
    exp = runtime.experiment
    return [exp.id_set.name, *(s.name for s in exp.shifts)]


def path_alphas(alpha: float) -> list[float]:
    """PATH_ALPHAS with the session's α among them."""
    return sorted({*PATH_ALPHAS, round(float(alpha), 6)})


def method_curves(runtime: ExperimentRuntime, name: str, params: Mapping[str, Any], alpha: float, working: Working,
                  cache: DiskCache | None = None, images: int = PATH_IMAGES) -> Curves:
    """A method's path (PATH_ALPHAS and α) on a fair sample of every set, computed in the caller's working model."""
    merged = with_method(runtime, name, params)
    return run_sweep(merged, path_alphas(alpha), plotted_sets(runtime), cache, working, max_images=images,
                     resume=False).curves()


def beta_path(runtime: ExperimentRuntime, alpha: float, working: Working, cache: DiskCache | None = None,
              betas: Sequence[float] = BETA_PATH, images: int = PATH_IMAGES) -> dict[float, dict[str, float]]:
    """LiNeS at the current α for each β: every set's accuracy and the shift average, by β."""
    found = {}
    for beta in betas:
        merged = with_method(runtime, "lines", {"beta": beta})
        curves = run_sweep(merged, [float(alpha)], plotted_sets(runtime), cache, working, max_images=images,
                           resume=False).curves()
        found[float(beta)] = curves.accuracies(curves.alphas[0])
    return found


def stock_ratios(runtime: ExperimentRuntime) -> dict[str, float]:
    """Model Stock's t per tensor (layout order), from the endpoints sharing θ₀."""
    return layer_ratios(endpoints(runtime).inputs)


def depth_labels(runtime: ExperimentRuntime) -> list[str]:
    """LiNeS' depth groups of the image tower, stem to head end (the expert view's sliders)."""
    _, count = depths([sl.name for sl in endpoints(runtime).inputs.layout])
    return ["stem", *(f"block {i}" for i in range(1, count - 1)), "head end"]


@dataclass(frozen=True)
class LabelFree:
    """A label-free α for WiSE-FT, how it was found, and (DaWin) the per-image mix's ID top-1."""

    label: str
    alpha: float
    basis: str
    mix_top1: float | None = None


def label_free_alphas(runtime: ExperimentRuntime) -> tuple[list[LabelFree], list[str]]:
    """The label-free α choices this experiment allows, and one line per choice it cannot make yet (and why)."""
    found: list[LabelFree] = []
    missing: list[str] = []
    stock = model_stock_alpha(runtime)
    if stock is None:
        missing.append("Model Stock's ratio needs ≥ 2 fine-tuned endpoints from the same θ₀")
    else:
        found.append(LabelFree("Model Stock ratio", stock, "mean per-tensor t, weighted by size"))
    result = cached_sweep(runtime)
    if result is None:
        missing.append("DaWin's entropy weighting reads the finished sweep's probabilities: wait for the sweep")
    else:
        try:
            dawin = dawin_from_sweep(runtime, result)
        except ValueError as err:
            missing.append(f"DaWin: {err}")
        else:
            found.append(LabelFree("DaWin mean λ", dawin.mean_lambda, f"entropy weighting on {result.id_set}",
                                   dawin.mix_top1))
    return found, missing


def is_plain(name: str) -> bool:
    """Whether `name` is the straight line itself (nothing extra to draw)."""
    return name == PLAIN
