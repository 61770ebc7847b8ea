"""Effective robustness: the testbed's line over standard models, its bootstrap band, and each alpha's distance
above it (Taori et al. 2020; Miller et al. 2021); torch-free.

As the testbed draws its lines (`plotting/plotter.py`): accuracies are transformed (logit by default, ln(p/(1 - p));
probit Φ⁻¹(p); or left linear), a least-squares line is fitted over the standard-training models, and its 95% band
is the 2.5 and 97.5 percentiles of the lines refitted to 1,000 bootstrap resamples of those models. A model's
effective robustness is its shift accuracy minus the line's value at its ID accuracy.

A testbed row at 0% or 100% on either axis has no logit or probit: it is left out of the fit on those scales (and
named in `LineFit.dropped`), kept on the linear one. The one standard model this touches is ResNet-50 on
ImageNet-A (0%: ImageNet-A's images were chosen because ResNet-50 gets them wrong).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import pandas as pd

from ..experiment.spec import Experiment
from .curves import AVG_ROW, Curves
from .testbed import STANDARD, ReferenceSource, ShiftAxes, experiment_axes, load_testbed

FIT_SCALES = ("logit", "probit", "linear")
BOOTSTRAPS = 1000
BAND_SEED = 0
Z95 = NormalDist().inv_cdf(0.975)
_CLIP = 1e-3  # an evaluated model at exactly 0% or 100% is placed just inside, as the plots place it
_NORMAL = NormalDist()
ROBUSTNESS_TITLE = ("effective robustness (points): shift accuracy minus the testbed's logit line over its standard "
                    "ImageNet models, at the model's ID accuracy; avg_shifts against the mean of the lines")
FAMILY_TITLE = ("effective robustness (points): shift accuracy minus the logit line over the demo's family of standard "
                "classifiers, at the model's ID accuracy; avg_shifts against the mean of the lines")


def transform(p: np.ndarray | float, scale: str) -> np.ndarray:
    """Accuracy fractions onto the fit's axis; 0 and 1 have no logit or probit (NaN there)."""
    p = np.asarray(p, dtype=float)
    if scale == "linear":
        return p.copy()
    inside = np.where((p > 0) & (p < 1), p, np.nan)
    if scale == "logit":
        return np.log(inside / (1 - inside))
    if scale == "probit":
        out = np.full(inside.shape, np.nan)
        finite = np.isfinite(inside)
        out[finite] = [_NORMAL.inv_cdf(float(v)) for v in inside[finite]]
        return out
    raise ValueError(f"unknown fit scale {scale!r}; use one of {FIT_SCALES}")


def inverse(z: np.ndarray | float, scale: str) -> np.ndarray:
    """Axis coordinates back to accuracy fractions."""
    z = np.asarray(z, dtype=float)
    if scale == "linear":
        return z.copy()
    if scale == "logit":
        return 1 / (1 + np.exp(-z))
    if scale == "probit":
        return np.vectorize(_NORMAL.cdf, otypes=[float])(z)
    raise ValueError(f"unknown fit scale {scale!r}; use one of {FIT_SCALES}")


def _clipped(p: float) -> float:
    return min(max(p, _CLIP), 1 - _CLIP)


@dataclass(frozen=True)
class LineFit:
    """A least-squares line y = intercept + slope * x on transformed accuracies, with its bootstrap refits."""

    scale: str
    slope: float
    intercept: float
    models: int  # testbed rows the line was fitted over
    boot: np.ndarray = field(repr=False)  # (B, 2): slope and intercept of every bootstrap refit
    dropped: tuple[str, ...] = ()  # rows left out: no finite coordinate on this scale (0% or 100%)

    def at(self, x: np.ndarray | float) -> np.ndarray:
        """The line's accuracy (fraction) at ID accuracy x (fraction)."""
        return inverse(self.intercept + self.slope * transform(_clip_all(x), self.scale), self.scale)

    def band(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """The 95% band (low, high fractions) at x: percentiles 2.5 and 97.5 of the bootstrap lines there."""
        z = transform(_clip_all(x), self.scale)
        lines = self.boot[:, 1:2] + self.boot[:, 0:1] * np.atleast_1d(z)[None, :]  # (B, len(x))
        low, high = np.percentile(lines, [2.5, 97.5], axis=0)
        shape = np.shape(x)
        return inverse(low, self.scale).reshape(shape), inverse(high, self.scale).reshape(shape)

    def slope_at(self, x: float) -> float:
        """d line / d x in accuracy units at x (for the error that x's own sampling carries into the line)."""
        h = 1e-5
        x = _clipped(x)
        return float((self.at(x + h) - self.at(x - h)) / (2 * h))


def _clip_all(x: np.ndarray | float) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=float), _CLIP, 1 - _CLIP)


def fit_line(x: Sequence[float], y: Sequence[float], scale: str = "logit", names: Sequence[str] = (),
             boots: int = BOOTSTRAPS, seed: int = BAND_SEED) -> LineFit:
    """Fit the line through points (x, y) given as accuracy fractions, and its bootstrap refits (seeded)."""
    zx, zy = transform(np.asarray(x, dtype=float), scale), transform(np.asarray(y, dtype=float), scale)
    keep = np.isfinite(zx) & np.isfinite(zy)
    names = list(names) or [str(i) for i in range(len(zx))]
    dropped = tuple(n for n, k in zip(names, keep, strict=True) if not k)
    zx, zy = zx[keep], zy[keep]
    if len(zx) < 3:
        raise ValueError(f"a line needs at least 3 models with finite {scale} accuracies, got {len(zx)}")
    slope, intercept = _least_squares(zx[None, :], zy[None, :])
    rows = np.random.default_rng(seed).integers(0, len(zx), size=(boots, len(zx)))
    boot = np.stack(_least_squares(zx[rows], zy[rows]), axis=1)
    return LineFit(scale, float(slope[0]), float(intercept[0]), len(zx), boot, dropped)


def _least_squares(zx: np.ndarray, zy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slope and intercept of each row's least-squares line (rows of x and y values)."""
    mx, my = zx.mean(axis=1, keepdims=True), zy.mean(axis=1, keepdims=True)
    var = ((zx - mx) ** 2).sum(axis=1)
    slope = ((zx - mx) * (zy - my)).sum(axis=1) / np.where(var > 0, var, np.nan)
    return slope, my[:, 0] - slope * mx[:, 0]


def standard_line(x_column: str, y_column: str, scale: str = "logit", seed: int = BAND_SEED,
                  frame: pd.DataFrame | None = None, standard: str = STANDARD) -> LineFit:
    """The line of one shift column against one ID column over the models of type `standard` (default: the
    testbed's standard-training models)."""
    frame = load_testbed() if frame is None else frame
    rows = frame[(frame["type"] == standard) & frame[x_column].notna() & frame[y_column].notna()]
    return fit_line(rows[x_column] / 100, rows[y_column] / 100, scale, list(rows["model"]), seed=seed)


@dataclass(frozen=True)
class Robustness:
    """One model's effective robustness: shift accuracy minus the line at its ID accuracy (fractions)."""

    value: float
    line: float  # the line's accuracy at the model's ID accuracy
    se: float | None  # from both accuracies' image counts and the band's width (None: counts unknown)


def effective_robustness(fit: LineFit | AverageLine, x: float, y: float, n_x: int | None = None,
                         var_y: float | None = None) -> Robustness:
    """y minus the line at x. Its standard error combines the binomial error of x (n_x images; the line's slope
    carries it), y's variance `var_y` (y(1 - y)/n for one set) and the band's (its 95% half-width / 1.96)."""
    line = float(fit.at(x))
    if not n_x or var_y is None:
        return Robustness(y - line, line, None)
    low, high = fit.band(x)
    band_se = float(high - low) / (2 * Z95)
    return Robustness(y - line, line, math.sqrt(var_y + fit.slope_at(x) ** 2 * x * (1 - x) / n_x + band_se ** 2))


@dataclass(frozen=True)
class AverageLine:
    """The shift average's line: the mean of the shifts' lines against ImageNet accuracy, and its band (the
    percentiles of the mean of their b-th bootstrap lines, fitted over the same models with the same seed)."""

    fits: tuple[LineFit, ...]

    def at(self, x: np.ndarray | float) -> np.ndarray:
        """The mean of the lines at ImageNet accuracy x."""
        return np.mean([fit.at(x) for fit in self.fits], axis=0)

    def band(self, x: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """95% band (low, high fractions) at x."""
        lines = np.mean([inverse(fit.boot[:, 1:2] + fit.boot[:, 0:1] *
                                 np.atleast_1d(transform(_clip_all(x), fit.scale))[None, :], fit.scale)
                         for fit in self.fits], axis=0)
        low, high = np.percentile(lines, [2.5, 97.5], axis=0)
        return low.reshape(np.shape(x)), high.reshape(np.shape(x))

    def slope_at(self, x: float) -> float:
        """d line / d x in accuracy units at x."""
        return float(np.mean([fit.slope_at(x) for fit in self.fits]))


@dataclass(frozen=True)
class ReferenceLines:
    """The reference models' lines for an experiment's shifts: each on its own axes, and each against the ID
    column (ImageNet, for the testbed) for the shift average."""

    axes: tuple[ShiftAxes, ...]
    scale: str
    own: dict[str, LineFit]  # shift set -> its line on the testbed's axes (R, A, ObjectNet: ImageNet on its classes)
    on_id: dict[str, LineFit]  # shift set -> its line against all of ImageNet's accuracy
    average: AverageLine  # the mean of the shifts' lines against ImageNet (over the models that have every shift)

    def line_for(self, name: str, curves: Curves) -> tuple[LineFit, bool]:
        """A shift's line, and whether its x is ImageNet on its classes (when the sweep measured that), else all
        of ImageNet (the line then fitted on `val` too)."""
        restricted = bool(curves.id_on_classes.get(name))
        return (self.own[name] if restricted else self.on_id[name]), restricted

    @property
    def source(self) -> ReferenceSource:
        """Where the reference models come from (the testbed or the demo family)."""
        return self.axes[0].source

    @property
    def title(self) -> str:
        """The heading of an effective-robustness table over these lines."""
        return ROBUSTNESS_TITLE if self.source.is_testbed else FAMILY_TITLE


def reference_lines(axes: Sequence[ShiftAxes], scale: str = "logit", seed: int = BAND_SEED) -> ReferenceLines:
    """Fit every shift's line (the average's over the standard models with every shift known, so that one seed
    draws the same resamples for all of them); cached: the same shifts and scale give the same (shared) lines."""
    return _reference_lines(tuple(axes), scale, seed)


@lru_cache(maxsize=32)
def _reference_lines(axes: tuple[ShiftAxes, ...], scale: str, seed: int) -> ReferenceLines:
    source = axes[0].source
    frame, x_id, kind = source.frame(), source.id_column, source.standard
    columns = [x_id, *{a.y_column for a in axes}]
    complete = frame[frame[columns].notna().all(axis=1)]
    return ReferenceLines(axes, scale,
                          {a.set_name: standard_line(a.x_column, a.y_column, scale, seed, frame, kind) for a in axes},
                          {a.set_name: standard_line(x_id, a.y_column, scale, seed, frame, kind) for a in axes},
                          AverageLine(tuple(standard_line(x_id, a.y_column, scale, seed, complete, kind)
                                            for a in axes)))


def _binomial(p: float, n: int) -> float | None:
    return p * (1 - p) / n if n else None


def curve_robustness(curves: Curves, lines: ReferenceLines, alpha: float) -> dict[str, Robustness]:
    """Effective robustness at a grid alpha of every shift the testbed covers and of their average (AVG_ROW)."""
    out: dict[str, Robustness] = {}
    if not lines.axes:
        return out
    n_id = curves.counts.get(curves.id_set, (0, 0))[0]
    variances: list[float | None] = []
    for axes in lines.axes:
        name = axes.set_name
        fit, restricted = lines.line_for(name, curves)
        x = curves.id_on_classes[name][alpha] if restricted else curves.top1(curves.id_set, alpha)
        n_x = curves.id_on_classes_counts.get(name, 0) if restricted else n_id
        y = curves.top1(name, alpha)
        variances.append(_binomial(y, curves.counts.get(name, (0, 0))[0]))
        out[name] = effective_robustness(fit, x, y, n_x, variances[-1])
    shift_mean = float(np.mean([curves.top1(a.set_name, alpha) for a in lines.axes]))
    var_mean = None if None in variances else sum(v for v in variances if v is not None) / len(variances) ** 2
    out[AVG_ROW] = effective_robustness(lines.average, curves.top1(curves.id_set, alpha), shift_mean, n_id, var_mean)
    return out


def robustness_table(curves: Curves, lines: ReferenceLines) -> pd.DataFrame:
    """One row per alpha: effective robustness (fractions) of every covered shift and of the average."""
    rows = [{"alpha": a, **{k: r.value for k, r in curve_robustness(curves, lines, a).items()}}
            for a in sorted(curves.alphas)]
    return pd.DataFrame(rows).set_index("alpha")


def robustness_rows(table: pd.DataFrame) -> dict[float, dict[str, float]]:
    """robustness_table's rows as JSONL keys by alpha: '<set>:effective_robustness' (fractions)."""
    return {float(alpha): {f"{column}:effective_robustness": float(value) for column, value in row.items()}
            for alpha, row in table.iterrows()}


def experiment_robustness(exp: Experiment, curves: Curves, scale: str = "logit") -> pd.DataFrame | None:
    """Effective robustness of every alpha of an experiment's curves, or None when no reference models apply
    (neither the testbed nor the demo family)."""
    axes = experiment_axes(exp)
    return robustness_table(curves, reference_lines(axes, scale)) if axes else None
