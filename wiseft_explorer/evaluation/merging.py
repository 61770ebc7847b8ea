"""An experiment along a merge method's path: the runtime variant the sweep, export and pages use unchanged.

`with_method(runtime, choice)` is a runtime that shares the experiment's loaded models and sets but whose `space`
walks the method's path and whose `fingerprint` names the method and its parameters, so every cache key made
from it (sweep entries, stream state) is the method's own; plain WiSE-FT returns the runtime itself, whose keys
stay what they were. The other fine-tuned endpoints are loaded once per runtime, and only those fine-tuned from
the experiment's θ₀ take part (the others are listed in `skipped`).

The greedy soup is chosen on the held-out ID split (`[id_val]`) as mlfoundations/model-soups' main.py does: each
endpoint alone and each candidate soup is evaluated there (cached like any sweep entry), and an ingredient is kept
only when the soup's accuracy rises strictly. Without `[id_val]` the ID test set chooses, and the choice is marked
optimistic (it has seen the images it is then scored on).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from ..core.checkpoints import CheckpointError
from ..core.heads import HeadProgress
from ..core.interpolate import WeightSpace, flat_policy
from ..core.loading import load_finetuned
from ..core.merging.base import MergeInputs
from ..core.merging.registry import MethodChoice
from ..core.merging.soups import GreedySoup, greedy_members
from ..core.merging.space import MergedSpace, merge_inputs
from ..core.models import ModelPair
from ..store.cache import DiskCache
from ..store.keys import file_digest
from .runtime import ExperimentRuntime


@dataclass
class Endpoints:
    """The experiment's fine-tuned endpoints that share its θ₀ (the chosen one first) as merge inputs."""

    inputs: MergeInputs
    skipped: list[str] = field(default_factory=list)


_ENDPOINTS: weakref.WeakKeyDictionary[ExperimentRuntime, Endpoints] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def endpoints(runtime: ExperimentRuntime) -> Endpoints:
    """Every endpoint sharing θ₀ as flat buffers with the experiment's head policy, loaded once per runtime."""
    with _LOCK:
        if runtime not in _ENDPOINTS:
            _ENDPOINTS[runtime] = _load_endpoints(runtime)
        return _ENDPOINTS[runtime]


def _load_endpoints(runtime: ExperimentRuntime) -> Endpoints:
    exp, pair = runtime.experiment, runtime.models
    others, names, skipped = [], [exp.endpoint or "fine-tuned"], []
    for endpoint in exp.endpoints:
        if endpoint.checkpoint == exp.finetuned:
            continue
        try:  # load_finetuned refuses a checkpoint fine-tuned from another θ₀ (its recorded digest differs)
            model, meta = load_finetuned(endpoint.checkpoint, pair.zeroshot, pair.clip, exp)
        except CheckpointError as err:
            skipped.append(f"{endpoint.name}: {err}")
            continue
        if meta.get("notes") and any("zero-shot weights" in note for note in meta["notes"]):
            skipped.append(f"{endpoint.name}: fine-tuned from other zero-shot weights")
            continue
        others.append(WeightSpace(pair.zeroshot, model.to(pair.device), flat_policy(exp.head_policy)).theta1)
        names.append(endpoint.name)
    return Endpoints(merge_inputs(runtime.space, others, names), skipped)


class MergedRuntime(ExperimentRuntime):
    """The experiment along one method's path; models and sets are the base runtime's."""

    def __init__(self, base: ExperimentRuntime, choice: MethodChoice) -> None:  # noqa: D107
        super().__init__(base.experiment)
        self.base, self.choice = base, choice
        self.head_progress = base.head_progress
        self._sets, self._set_fps = base._sets, base._set_fps  # the same set indexes: nothing scanned twice

    def load_models(self, progress: HeadProgress | None = None) -> ModelPair:
        models = self.base.load_models(progress)
        self.__dict__["models"] = models
        return models

    @cached_property
    def space(self) -> WeightSpace:
        """The method's path, α from θ₀ (0) to the method's point (1)."""
        inputs = endpoints(self.base).inputs
        if self.choice.method.needs_fishers and inputs.fishers is None:
            from .fisher import attach_fishers

            attach_fishers(self.base, inputs)
        return MergedSpace(self.base.space, inputs, self.choice)

    @cached_property
    def fingerprint(self) -> dict[str, Any]:
        """The experiment's identity plus the method and its parameters (and the endpoints it merges)."""
        return {**self.base.fingerprint, "method": self.choice.key(),
                "endpoints": [file_digest(e.checkpoint) for e in self.experiment.endpoints]}

    def describe(self) -> dict[str, str]:
        return {**self.base.describe(), "merge method": self.choice.label()}


def with_method(runtime: ExperimentRuntime, name: str = "wiseft", params: Mapping[str, Any] | None = None
                ) -> ExperimentRuntime:
    """The runtime along method `name` with `params` (checked); plain WiSE-FT is the runtime itself.

    A soup with members = "greedy" is resolved here, on the held-out set (see soups.greedy_soup)."""
    params = dict(params or {})
    if name == "soup" and params.get("members") == "greedy":
        params["members"] = greedy_soup(runtime).chosen.param
    choice = MethodChoice.of(name, params)
    return runtime if choice.plain else MergedRuntime(runtime, choice)


@dataclass(frozen=True)
class GreedyChoice:
    """The greedy soup, the set that chose it, whether that set is the test set, and each endpoint's accuracy."""

    chosen: GreedySoup
    held_out: str
    optimistic: bool
    individual: list[float]


def soup_accuracy(runtime: ExperimentRuntime, members: list[int], set_name: str,
                  cache: DiskCache | None = None) -> float:
    """Top-1 of the uniform soup of `members` on one set (α = 1: the soup itself)."""
    from .sweep import evaluate_at

    soup = with_method(runtime, "soup", {"members": ",".join(str(i) for i in members)})
    with soup.borrow_working() as working:
        return evaluate_at(soup, 1.0, working, [set_name], cache)[set_name].top1


def greedy_soup(runtime: ExperimentRuntime, cache: DiskCache | None = None) -> GreedyChoice:
    """Sort the endpoints by held-out accuracy and add each to the soup only if its accuracy rises."""
    exp = runtime.experiment
    held_out = exp.id_val.name if exp.id_val else exp.id_set.name
    count = len(endpoints(runtime).inputs.endpoints)
    individual = [soup_accuracy(runtime, [i], held_out, cache) for i in range(count)]
    chosen = greedy_members(individual, lambda members: soup_accuracy(runtime, members, held_out, cache))
    return GreedyChoice(chosen, held_out, exp.id_val is None, individual)
