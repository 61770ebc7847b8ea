"""The diagonal Fishers of θ₀ and θ₁ over one of the experiment's sets, cached on disk beside each checkpoint.

A Fisher file sits beside the checkpoint it belongs to, `<stem>.fisher-<key>.safetensors`, where the key holds
the checkpoint's content digest (with the experiment's, the set's identity, the image count and the seed), so a
rewritten checkpoint is never paired with an old Fisher. θ₀'s goes beside the zero-shot weights file (into the
cache folder when the weights are a tag). No labels are read: the paper samples them from the model's softmax.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from ..core.checkpoints import load_checkpoint, save_checkpoint
from ..core.merging.base import MergeInputs
from ..core.merging.fisher_estimate import diagonal_fisher, fisher_flat
from ..core.models import ImageClassifier
from ..data.sets import load_batch
from ..store.keys import cache_key, default_cache_dir, file_digest
from .runtime import ExperimentRuntime

FISHER_FORMAT = "wiseft-explorer/fisher"
DEFAULT_IMAGES = 1000


def fisher_set(runtime: ExperimentRuntime, name: str | None = None) -> str:
    """The set the Fisher is computed on: `name`, else the held-out ID split, else the ID set."""
    exp = runtime.experiment
    return name or (exp.id_val.name if exp.id_val else exp.id_set.name)


def fisher_paths(runtime: ExperimentRuntime, set_name: str, max_images: int, seed: int = 0) -> tuple[Path, Path]:
    """Where θ₀'s and θ₁'s Fishers are cached."""
    exp = runtime.experiment
    assert exp.finetuned is not None
    zeroshot = Path(exp.zeroshot.pretrained or "")
    paths = []
    for role, checkpoint in (("zeroshot", zeroshot if zeroshot.is_file() else None), ("finetuned", exp.finetuned)):
        key = cache_key(kind="fisher", role=role, checkpoint=file_digest(checkpoint) if checkpoint else "",
                        set=runtime.set_fingerprint(set_name), images=max_images, seed=seed, **runtime.fingerprint)
        folder = checkpoint.parent if checkpoint else Path(exp.cache_dir or default_cache_dir())
        stem = checkpoint.stem if checkpoint else "zeroshot"
        paths.append(folder / f"{stem}.fisher-{key[:16]}.safetensors")
    return paths[0], paths[1]


def _images(runtime: ExperimentRuntime, set_name: str, max_images: int) -> Iterator[torch.Tensor]:
    """The set's first `max_images` images of its fair order, one at a time (undecodable ones left out)."""
    ev = runtime.eval_set(set_name)
    for index in ev.order[:max_images]:
        images, _, _ = load_batch(ev, [int(index)], runtime.preprocess)
        if images is not None:
            yield images[0]


def compute_fishers(runtime: ExperimentRuntime, set_name: str | None = None, max_images: int = DEFAULT_IMAGES,
                    seed: int = 0, progress: Callable[[str, int, int], None] | None = None) -> tuple[Path, Path]:
    """θ₀'s and θ₁'s Fishers, computed (or found in their cache files); `progress(model, done, total)`."""
    name = fisher_set(runtime, set_name)
    total = min(max_images, len(runtime.eval_set(name)))
    paths = fisher_paths(runtime, name, max_images, seed)
    models: tuple[ImageClassifier, ImageClassifier] = (runtime.models.zeroshot, runtime.models.finetuned)
    for role, model, path in zip(("zeroshot", "finetuned"), models, paths, strict=True):
        if path.is_file():
            continue
        report = (lambda done, role=role: progress(role, done, total)) if progress else None
        fisher = diagonal_fisher(model, _images(runtime, name, max_images), seed, report)
        save_checkpoint(path, fisher, {"format": FISHER_FORMAT, "set": name, "images": total, "role": role},
                        compact=False)
    return paths


def attach_fishers(runtime: ExperimentRuntime, inputs: MergeInputs, set_name: str | None = None,
                   max_images: int = DEFAULT_IMAGES, seed: int = 0) -> None:
    """Put the cached Fishers into merge inputs; refuse, naming the command, when they were not computed."""
    name = fisher_set(runtime, set_name)
    paths = fisher_paths(runtime, name, max_images, seed)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no Fisher for this experiment on {name} ({max_images} images) yet: compute them "
                                f"with `wiseft-explorer fisher --experiment {runtime.experiment.path}`")
    flats = [fisher_flat(load_checkpoint(p)[0], inputs.layout, inputs.theta0) for p in paths]
    inputs.fishers = (flats[0], flats[1])
