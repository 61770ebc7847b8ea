"""An experiment at run time: models, weight space and eval sets, loaded lazily once and then read-only."""

from __future__ import annotations

import threading
from functools import cached_property
from pathlib import Path

import torch

from .cache import file_digest
from .data import EvalSet, load_eval_set
from .experiment import DatasetSpec, Experiment, load_experiment
from .interpolate import WeightSpace, Working
from .models import ImageClassifier, ModelPair, load_models

WORLD_VERSION = "world-v2"  # bump when the demo world's rendering changes, so cached sweeps are recomputed


class ExperimentRuntime:
    """Everything an experiment needs at run time; safe to share between threads and sessions (read-only)."""

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        self._lock = threading.RLock()
        self._sets: dict[str, EvalSet] = {}

    @classmethod
    def from_path(cls, path: str | Path | None = None) -> ExperimentRuntime:
        """Load an experiment file and wrap it."""
        return cls(load_experiment(path))

    @cached_property
    def models(self) -> ModelPair:
        """Both classifiers, loaded on first use."""
        with self._lock:
            return load_models(self.experiment)

    @cached_property
    def space(self) -> WeightSpace:
        """The zero-shot/fine-tuned weight line under the experiment's head policy."""
        with self._lock:
            pair = self.models
            return WeightSpace(pair.zeroshot, pair.finetuned, self.experiment.head_policy)

    @property
    def device(self) -> torch.device:
        """Where the models run."""
        return self.models.device

    def spec(self, name: str) -> DatasetSpec:
        """The dataset spec of a set by name."""
        for spec in self.experiment.eval_sets:
            if spec.name == name:
                return spec
        raise KeyError(f"no set named {name!r}; sets: {', '.join(self.set_names)}")

    @property
    def set_names(self) -> list[str]:
        """ID set, held-out ID split, then shift sets."""
        return [s.name for s in self.experiment.eval_sets]

    def eval_set(self, name: str) -> EvalSet:
        """A set decoded and preprocessed once, then reused."""
        with self._lock:
            if name not in self._sets:
                self._sets[name] = load_eval_set(self.spec(name), self.experiment.classnames,
                                                 self.models.clip.preprocess)
            return self._sets[name]

    def data_warnings(self) -> list[str]:
        """One line per loaded set that skipped unreadable files (the set is still usable)."""
        with self._lock:
            sets = list(self._sets.values())
        return [f"{ev.name}: skipped {len(ev.skipped)} unreadable file(s), e.g. {Path(ev.skipped[0][0]).name}: "
                f"{ev.skipped[0][1]}" for ev in sets if ev.skipped]

    def new_working(self) -> Working:
        """A private working model for one session or thread."""
        return self.space.new_working()

    def classifier_at(self, working: Working, alpha: float) -> ImageClassifier:
        """theta_alpha written into the caller's own working model."""
        return self.space.interpolate_into(working, alpha)

    @cached_property
    def fingerprint(self) -> dict[str, str]:
        """Content identity of both models and the prompts: the model part of every cache key."""
        exp = self.experiment
        pretrained = exp.zeroshot.pretrained or ""
        zs = file_digest(Path(pretrained)) if pretrained and Path(pretrained).is_file() else pretrained
        if pretrained.startswith("local-dir:"):
            folder = Path(pretrained.removeprefix("local-dir:"))
            zs = ",".join(file_digest(p) for p in sorted(folder.iterdir()) if p.is_file())
        return {"model": exp.zeroshot.name, "zeroshot": zs,
                "config": file_digest(exp.zeroshot.config) if exp.zeroshot.config else "",
                "finetuned": file_digest(exp.finetuned) if exp.finetuned else "", "head_policy": exp.head_policy,
                "classes": "|".join(exp.classnames), "templates": "|".join(exp.templates),
                "precision": exp.precision}

    def set_fingerprint(self, name: str) -> str:
        """Content identity of one set's images (without decoding them)."""
        spec = self.spec(name)
        parts = [spec.source, str(spec.limit), ",".join(spec.classes or ()), str(spec.mapping or "")]
        if spec.is_world:
            from .world import SPECS

            world_spec = SPECS.get(spec.source.removeprefix("world:"))
            # The set's real size matters when no limit is given: a changed default must not reuse old entries.
            parts += [WORLD_VERSION, str(spec.limit or (world_spec.size if world_spec else ""))]
        else:
            files = sorted(p for p in Path(spec.source).rglob("*") if p.is_file())
            parts += [f"{p.relative_to(spec.source)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
            if spec.mapping:
                parts.append(file_digest(spec.mapping))
        return "\n".join(parts)
