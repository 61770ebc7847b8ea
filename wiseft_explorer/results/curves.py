"""Accuracy curves over alpha (the sweep's top-1 table) and their small on-disk copy; torch-free.

Everything the Explorer page draws (metric cards, both plots, the three alpha choices) needs only these numbers,
so a warm start reads them from a JSON file before torch, open_clip or any model has loaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..experiment.spec import Experiment
from ..store.atomic import atomic_write_text
from ..store.keys import (
    cache_key,
    default_cache_dir,
    experiment_fingerprint,
    set_fingerprint,
    software_versions,
)
from .metrics import TOP1, common_metric

ALPHA_GRID: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))
PAPER_ALPHA = 0.5
ALPHA_TOL = 1e-6  # an alpha this close to a grid alpha is that grid alpha (typed or parsed values carry rounding)
AVG_ROW = "avg_shifts"  # the shift average's row and column, beside the sets'
# A paired standard error is reported once this many images disagree: with fewer it is unreliable (0 when none
# disagree yet, as in a first round of 16 images), and the error is left out (NaN) rather than shown as "± 0.0".
MIN_DISAGREEING = 10
CURVES_FOLDER = "curves"


@dataclass
class Curves:
    """Top-1 accuracy of every set at every alpha of a sweep, with the roles of the sets."""

    id_set: str
    id_val: str | None
    shift_sets: list[str]
    alphas: list[float]
    top1s: dict[str, dict[float, float]] = field(default_factory=dict)  # set -> alpha -> top-1 in [0, 1]
    about: dict[str, str] = field(default_factory=dict)  # the models as the sweep saw them (names, sizes, device)
    # set (or avg_shifts) -> alpha -> standard errors of the difference to zero-shot and to fine-tuned (NaN: too
    # few images disagree for one)
    errors: dict[str, dict[float, tuple[float, float]]] = field(default_factory=dict)
    # set (or avg_shifts) -> alpha -> 95% interval of the accuracy (Wilson), for error bars and bands
    intervals: dict[str, dict[float, tuple[float, float]]] = field(default_factory=dict)
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # set -> (images evaluated, images in set)
    seed: int | None = None  # the seed of the sets' fair order (and of any `limit` sample)
    # set -> alpha -> top-1 of the output-space ensemble (1 - alpha) logits_0 + alpha logits_1 (empty: not kept)
    ensemble: dict[str, dict[float, float]] = field(default_factory=dict)
    # set -> the metric its numbers are in, as results.metrics names it ('F1-macro_all', ...); absent: top-1
    metrics: dict[str, str] = field(default_factory=dict)
    # shift set -> alpha -> top-1 on the ID images of that shift's classes, scored on those classes only (the
    # testbed's x-axis for ImageNet-R, -A and ObjectNet); and how many ID images that is, per shift set
    id_on_classes: dict[str, dict[float, float]] = field(default_factory=dict)
    id_on_classes_counts: dict[str, int] = field(default_factory=dict)

    @property
    def sets(self) -> list[str]:
        """Every set, in the experiment's order."""
        return list(self.top1s)

    def metric(self, key: str) -> str:
        """The metric a set's (or avg_shifts') numbers are in: 'top1' unless its preset names another; the shift
        average shares its sets' metric, or is a 'mean' of mixed ones."""
        if key == AVG_ROW:
            return common_metric([self.metrics.get(s, TOP1) for s in self.shift_sets])
        return self.metrics.get(key, TOP1)

    def grid_alpha(self, alpha: float) -> float | None:
        """The alpha of the curves equal to `alpha` (within ALPHA_TOL), or None when alpha is off their grid."""
        return next((a for a in self.alphas if abs(a - alpha) < ALPHA_TOL), None)

    def top1(self, set_name: str, alpha: float) -> float:
        """Top-1 accuracy of one set at one grid alpha."""
        return self.top1s[set_name][alpha]

    def avg_shifts(self, alpha: float) -> float:
        """Mean top-1 over the shift sets at alpha."""
        return shift_average({s: self.top1(s, alpha) for s in self.shift_sets}, self.shift_sets)

    def error(self, key: str, alpha: float) -> tuple[float | None, float | None] | None:
        """Standard errors of (alpha - zero-shot, alpha - fine-tuned) for a set or avg_shifts, if the sweep had them.

        Each is None while fewer than MIN_DISAGREEING images disagree (then no error is shown); None for both: None.
        """
        found = self.errors.get(key, {}).get(alpha)
        if found is None:
            return None
        zs, ft = (None if math.isnan(se) else float(se) for se in found)
        return None if zs is None and ft is None else (zs, ft)

    def interval(self, key: str, alpha: float) -> tuple[float, float] | None:
        """95% interval of a set's (or avg_shifts') accuracy at alpha, if known."""
        found = self.intervals.get(key, {}).get(alpha)
        return None if found is None else (float(found[0]), float(found[1]))

    @property
    def images(self) -> tuple[int, int]:
        """(images evaluated, images) summed over the sets."""
        return (sum(n for n, _ in self.counts.values()), sum(total for _, total in self.counts.values()))

    def accuracies(self, alpha: float) -> dict[str, float]:
        """Every set's top-1 and 'avg_shifts' at one grid alpha."""
        return self.with_average({name: self.top1(name, alpha) for name in self.top1s})

    def with_average(self, top1: Mapping[str, float]) -> dict[str, float]:
        """Sets' top-1 at one alpha (e.g. evaluated live off the grid) and their 'avg_shifts' over these shift sets."""
        return {**top1, AVG_ROW: shift_average(top1, self.shift_sets)}

    def table(self) -> pd.DataFrame:
        """One row per alpha: each set's top-1 (fractions) and avg_shifts."""
        rows = [{"alpha": alpha, **self.accuracies(alpha)} for alpha in sorted(self.alphas)]
        return pd.DataFrame(rows).set_index("alpha")

    def ensemble_curves(self) -> Curves | None:
        """The output-space ensemble's accuracies as Curves of their own (same sets and alphas), if kept."""
        if not self.ensemble:
            return None
        return Curves(self.id_set, self.id_val, list(self.shift_sets), list(self.alphas), dict(self.ensemble),
                      counts=dict(self.counts), seed=self.seed, metrics=dict(self.metrics))

    def jsonl_rows(self, extra: Mapping[float, Mapping[str, float]] | None = None) -> list[dict]:
        """Rows with the paper code's keys: alpha, '<Set>:<metric>' ('<Set>:top1' unless the set's preset names
        another metric, e.g. 'IWildCamOOD:F1-macro_all'), 'avg_shifts:<metric>', id_set, shift_sets; `extra` adds
        keys per alpha (e.g. '<set>:effective_robustness')."""
        return [{"alpha": float(alpha), **{f"{k}:{self.metric(k)}": float(v) for k, v in row.items()},
                 **{k: float(v) for k, v in (extra or {}).get(float(alpha), {}).items()},
                 "id_set": self.id_set, "shift_sets": self.shift_sets, "seed": self.seed,
                 "images": {name: n for name, (n, _) in self.counts.items()}}
                for alpha, row in self.table().iterrows()]

    def write_jsonl(self, path: str | Path, extra: Mapping[float, Mapping[str, float]] | None = None) -> Path:
        """Write the results as JSONL, atomically."""
        return atomic_write_text(Path(path), "".join(json.dumps(r) + "\n" for r in self.jsonl_rows(extra)))

    def to_json(self) -> str:
        """The curves as JSON (alphas as strings: JSON keys are strings)."""
        return json.dumps({"id_set": self.id_set, "id_val": self.id_val, "shift_sets": self.shift_sets,
                           "alphas": self.alphas,
                           "top1": {s: {repr(a): v for a, v in by.items()} for s, by in self.top1s.items()},
                           "errors": {s: {repr(a): list(v) for a, v in by.items()} for s, by in self.errors.items()},
                           "intervals": {s: {repr(a): list(v) for a, v in by.items()}
                                         for s, by in self.intervals.items()},
                           "counts": {s: list(v) for s, v in self.counts.items()}, "seed": self.seed,
                           "about": self.about,
                           "ensemble": {s: {repr(a): v for a, v in by.items()} for s, by in self.ensemble.items()},
                           "metrics": self.metrics,
                           "id_on_classes": {s: {repr(a): v for a, v in by.items()}
                                             for s, by in self.id_on_classes.items()},
                           "id_on_classes_counts": self.id_on_classes_counts})

    @classmethod
    def from_json(cls, text: str) -> Curves:
        """Parse to_json's output."""
        data = json.loads(text)
        top1s = {s: {float(a): float(v) for a, v in by.items()} for s, by in data["top1"].items()}
        def pairs(key: str) -> dict[str, dict[float, tuple[float, float]]]:
            return {s: {float(a): (float(v[0]), float(v[1])) for a, v in by.items()} for s, by in data[key].items()}

        def singles(key: str) -> dict[str, dict[float, float]]:
            return {s: {float(a): float(v) for a, v in by.items()} for s, by in data.get(key, {}).items()}

        return cls(data["id_set"], data["id_val"], list(data["shift_sets"]), [float(a) for a in data["alphas"]],
                   top1s, {str(k): str(v) for k, v in data["about"].items()}, pairs("errors"),
                   pairs("intervals"), {s: (int(v[0]), int(v[1])) for s, v in data["counts"].items()}, data["seed"],
                   singles("ensemble"), metrics={str(s): str(m) for s, m in data.get("metrics", {}).items()},
                   id_on_classes=singles("id_on_classes"),
                   id_on_classes_counts={s: int(n) for s, n in data.get("id_on_classes_counts", {}).items()})


def shift_average(top1: Mapping[str, float], shifts: Sequence[str]) -> float:
    """The paper's avg_shifts: mean top-1 over the shift sets (NaN without any)."""
    return sum(top1[s] for s in shifts) / len(shifts) if shifts else float("nan")


# Keyed as choose_alphas: without an ID-val set the ID choice is made on the test set, and its key says so.
CHOICE_LABELS = {"best_id_val": "best ID-val α", "best_id_test": "best ID-test α (optimistic)",
                 "best_avg_shifts": "best avg-shift α", "paper_default": "paper default α"}


@dataclass(frozen=True)
class AlphaChoice:
    """One way to pick alpha: its key (as in choose_alphas), the alpha, a label and what it was chosen on."""

    key: str
    alpha: float
    label: str
    basis: str  # "chosen on <set>…", or "fixed"

    def caption(self) -> str:
        """'best ID-val α: 0.7 (chosen on ID-val)'."""
        return f"{self.label}: {self.alpha:g} ({self.basis})"


def alpha_choices(curves: Curves) -> list[AlphaChoice]:
    """The three alpha choices, each with what it was chosen on: best ID (on ID-val, else on the ID test set,
    which is optimistic), best average shift (an oracle: the shifts are what alpha should be robust to), and the
    paper's fixed 0.5."""
    alphas = sorted(curves.alphas)
    selector = curves.id_val or curves.id_set
    best_id = max(alphas, key=lambda a: (curves.top1(selector, a), -abs(a - PAPER_ALPHA)))
    best_shift = max(alphas, key=lambda a: (curves.avg_shifts(a), -abs(a - PAPER_ALPHA)))
    if curves.id_val:
        id_choice = AlphaChoice("best_id_val", best_id, CHOICE_LABELS["best_id_val"], f"chosen on {curves.id_val}")
    else:
        id_choice = AlphaChoice("best_id_test", best_id, CHOICE_LABELS["best_id_test"],
                                f"chosen on the test set {curves.id_set}; add [id_val] to choose on held-out data")
    return [id_choice,
            AlphaChoice("best_avg_shifts", best_shift, CHOICE_LABELS["best_avg_shifts"],
                        "chosen on the shift sets: an oracle"),
            AlphaChoice("paper_default", PAPER_ALPHA, CHOICE_LABELS["paper_default"], "fixed")]


def choose_alphas(curves: Curves) -> dict[str, float]:
    """The three alpha choices by key: 'best_id_val' (or 'best_id_test' without an ID-val set), 'best_avg_shifts'
    and 'paper_default'; alpha_choices says what each was chosen on."""
    return {choice.key: choice.alpha for choice in alpha_choices(curves)}


def curves_path(exp: Experiment) -> Path:
    """Where the experiment's full-grid curves are stored: named by the content of its models, prompts and sets."""
    sets = {spec.name: set_fingerprint(spec, exp.seed) for spec in exp.eval_sets}
    key = cache_key(kind="curves", grid=list(ALPHA_GRID), sets=json.dumps(sets, sort_keys=True),
                    versions=software_versions(), **experiment_fingerprint(exp))
    return (exp.cache_dir or default_cache_dir()) / CURVES_FOLDER / f"{key}.json"


def _complete(exp: Experiment, curves: Curves) -> bool:
    """Whether the curves cover every set of the experiment at every alpha of the grid."""
    grid = set(ALPHA_GRID)
    return (grid <= set(curves.alphas) and {s.name for s in exp.eval_sets} <= set(curves.top1s)
            and all(grid <= set(by) for by in curves.top1s.values()))


def store_curves(exp: Experiment, curves: Curves) -> Path | None:
    """Keep a complete full-grid sweep's curves for the next start (partial grids are not stored)."""
    if not _complete(exp, curves):
        return None
    path = curves_path(exp)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, curves.to_json())


def stored_curves(exp: Experiment, path: Path | None = None) -> Curves | None:
    """The experiment's stored full-grid curves (at `path`, default curves_path), or None if never stored or unusable."""
    try:
        curves = Curves.from_json((path or curves_path(exp)).read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return curves if _complete(exp, curves) else None
