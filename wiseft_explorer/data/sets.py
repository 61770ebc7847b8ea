"""Evaluation sets: image folders or the demo world as indexes (labels, paths or pixels, fair order), and batches."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from ..experiment.parse import load_mapping
from ..experiment.presets import PresetError, preset_metric
from ..experiment.spec import DatasetSpec, ExperimentError
from ..results.metrics import TOP1_METRIC, SetMetric
from .folders import scan_image_folder
from .images import ImageDecodeError, decode_image, read_as_benchmark
from .preset_sets import preset_classes, read_preset, report_skipped
from .sampling import DEFAULT_SEED, fair_order, fair_sample
from .wilds_sets import preset_metric_of


@dataclass
class EvalSet:
    """An evaluation set as an index, without pixels: labels, covered classes, where each image is, its fair order.

    Folder sets keep only file paths (images are decoded while they stream, never all at once); generated world
    sets keep their small uint8 pixels in memory. `order` is the seeded fair order the engine streams them in.
    """

    name: str
    labels: torch.Tensor  # (N,) indices into the experiment's classes
    class_indices: torch.Tensor | None = None  # (K,) the classes this set covers; None = all
    raw: Any = field(default=None, repr=False)  # uint8 (N,H,W,3) pixels of generated sets (or a LazyImages)
    paths: list[str] | None = field(default=None, repr=False)  # file paths for folder sets
    skipped: list[tuple[str, str]] = field(default_factory=list, repr=False)
    seed: int = DEFAULT_SEED
    # ObjectNet: label k's logit is the max over groups[k]'s classes, written at class_indices[k] (its label)
    groups: tuple[tuple[int, ...], ...] | None = field(default=None, repr=False)
    border: int = 0  # pixels cut from every side of an image before preprocessing (ObjectNet's frame)
    benchmark: bool = False  # a preset set: files read as torchvision's pil_loader reads them (images.py)
    skip_unreadable: bool = True  # False: an unreadable file fails the sweep, naming it (presets' default)
    label_names: dict[int, str] | None = field(default=None, repr=False)  # a set's own names for some labels
    metric: SetMetric = field(default=TOP1_METRIC, repr=False)  # how its predictions become its number

    def __len__(self) -> int:
        return len(self.labels)

    @cached_property
    def order(self) -> np.ndarray:
        """The fair order (a permutation of range(N)) in which the set is streamed."""
        return fair_order(self.labels.numpy(), self.seed)

    def class_names(self, classnames: Sequence[str]) -> list[str]:
        """The experiment's class names as this set shows them (ObjectNet labels by ObjectNet's own names)."""
        names = list(classnames)
        for index, name in (self.label_names or {}).items():
            names[index] = name
        return names

    def right_classes(self, label: int) -> tuple[int, ...]:
        """The classes a prediction may name to be right for `label` (ObjectNet: every class of its group; a video
        class without ImageNet classes, or one not scored: only its label)."""
        targets = [] if self.groups is None or self.class_indices is None else self.class_indices.tolist()
        if self.groups is None or label not in targets:
            return (label,)
        k = targets.index(label)
        return tuple(self.groups[k]) or (label,)

    @property
    def in_memory(self) -> bool:
        """True for generated sets, whose pixels are held (folder sets are read from disk)."""
        return self.raw is not None

    def picture(self, index: int, size: int | None = None) -> Image.Image:
        """The original image (not preprocessed), optionally resized for display; folder images decode by path."""
        if self.raw is not None:
            img = Image.fromarray(self.raw[index])
        else:
            assert self.paths is not None  # a set without pixels in memory is a folder set, which has paths
            path = Path(self.paths[index])
            img = cut_border(read_as_benchmark(path) if self.benchmark else decode_image(path), self.border)
        if size:  # letterboxed into size x size: the aspect ratio is kept (a circle stays round)
            img = ImageOps.pad(img, (size, size), Image.Resampling.NEAREST if max(img.size) < size else Image.Resampling.BICUBIC,
                               color=(255, 255, 255))
        return img


def cut_border(picture: Image.Image, border: int) -> Image.Image:
    """The image without `border` pixels on every side (unchanged when the image is too small to lose them)."""
    width, height = picture.size
    if border <= 0 or min(width, height) <= 2 * border:
        return picture
    return picture.crop((border, border, width - border, height - border))


def preprocess_images(pictures: Sequence[Image.Image], preprocess: Callable) -> torch.Tensor:
    """Apply the model's eval transform to PIL images -> (N,3,H,W) float tensor."""
    if not pictures:
        raise ExperimentError("no images to preprocess")
    return torch.stack([preprocess(p) for p in pictures])


def _batch_preprocess(raw: np.ndarray, preprocess: Callable) -> torch.Tensor | None:
    """The eval transform of uint8 (N,S,S,3) images applied as one tensor op, or None when it would differ.

    Only for open_clip's Resize(S) -> CenterCrop(S) -> RGB -> ToTensor -> Normalize at the images' own size, where
    resize and crop leave an S x S image unchanged: the result is bit-identical to the per-image path (tested) and
    takes a few milliseconds instead of about 0.2 s per 700 demo images, on a cold start's critical path.
    """
    from torchvision import transforms as T

    steps = list(getattr(preprocess, "transforms", ()))
    side = raw.shape[1] if raw.ndim == 4 and raw.shape[1] == raw.shape[2] and raw.shape[3] == 3 else None
    if side is None or raw.dtype != np.uint8 or len(steps) != 5:
        return None
    resize, crop, _, to_tensor, normalize = steps
    if not (isinstance(resize, T.Resize) and resize.size in (side, [side], (side,), [side, side], (side, side))
            and resize.max_size is None and isinstance(crop, T.CenterCrop) and tuple(crop.size) == (side, side)
            and type(steps[2]).__name__ in ("MaybeConvertMode", "function") and isinstance(to_tensor, T.ToTensor)
            and isinstance(normalize, T.Normalize)):
        return None
    tensor = torch.from_numpy(raw.copy()).permute(0, 3, 1, 2).contiguous().to(torch.get_default_dtype()).div(255)
    return T.functional.normalize(tensor, normalize.mean, normalize.std)


def _subset_indices(spec: DatasetSpec, classnames: Sequence[str]) -> torch.Tensor | None:
    if not spec.classes:
        return None
    return torch.tensor([classnames.index(c) for c in spec.classes], dtype=torch.long)


def load_world_set(spec: DatasetSpec, classnames: Sequence[str], seed: int = DEFAULT_SEED) -> EvalSet:
    """A set of the built-in world (`world:<set>`, always world seed 0): labels now, pixels rendered when read."""
    from ..world.render import CLASSES
    from ..world.sets import LazyImages, set_labels

    set_name = spec.source.removeprefix("world:")
    try:
        world_labels = set_labels(set_name, seed=0, n=spec.limit)  # a world set's limit is how many to render
    except KeyError as err:
        raise ExperimentError(f"{spec.name}: {err.args[0]}") from err
    missing = [c for c in CLASSES if c not in classnames]
    if missing:
        raise ExperimentError(f"{spec.name}: world class '{missing[0]}' is not among the experiment's class names")
    to_exp = np.array([classnames.index(c) for c in CLASSES])
    labels = torch.from_numpy(to_exp[world_labels])
    keep = np.ones(len(labels), dtype=bool)
    subset = _subset_indices(spec, classnames)
    if subset is not None:
        keep = np.isin(labels.numpy(), subset.numpy())
    pixels = LazyImages(set_name, np.flatnonzero(keep))
    return EvalSet(spec.name, labels[torch.from_numpy(keep)], subset, raw=pixels, seed=seed)


def load_folder_set(spec: DatasetSpec, classnames: Sequence[str], seed: int = DEFAULT_SEED) -> EvalSet:
    """Scan an ImageFolder-layout folder (headers only, nothing decoded); `limit` draws a fair seeded sample."""
    mapping = load_mapping(spec.mapping)
    scan = scan_image_folder(Path(spec.source), list(classnames), mapping)
    subset = _subset_indices(spec, classnames)
    samples = scan.samples
    if subset is not None:  # as for world sets: images of classes outside the subset are not part of the set
        covered = set(subset.tolist())
        samples = [s for s in samples if s[1] in covered]
    if not samples:
        raise ExperimentError(f"{spec.name}: no readable images in {spec.source}")
    labels = np.array([label for _, label in samples], dtype=np.int64)
    # Scan order is class order, so a plain prefix would hold the first classes only.
    chosen = fair_sample(labels, spec.limit, seed)
    skipped = report_skipped(spec, [(str(path), reason) for path, reason in scan.skipped])
    return EvalSet(spec.name, torch.from_numpy(labels[chosen]), subset,
                   paths=[str(samples[i][0]) for i in chosen], skipped=skipped, seed=seed)


def load_preset_set(spec: DatasetSpec, classnames: Sequence[str], seed: int = DEFAULT_SEED) -> EvalSet:
    """A set read by its preset (ImageNet and its shifts, CIFAR-10 and its new test sets); `limit` samples fairly."""
    to_exp = preset_classes(spec.preset_key, classnames)
    try:
        found = read_preset(spec.preset_key, Path(spec.source))
    except PresetError as err:
        raise ExperimentError(f"{spec.name}: {err}") from err
    labels = to_exp[found.labels]
    chosen = fair_sample(labels, spec.limit, seed)
    report_skipped(spec, found.skipped)
    subset = None if found.class_indices is None else torch.from_numpy(to_exp[found.class_indices])
    metric = preset_metric_of(preset_metric(spec), labels[chosen], found, chosen, to_exp)
    groups = None if found.groups is None else tuple(tuple(int(to_exp[c]) for c in g) for g in found.groups)
    return EvalSet(spec.name, torch.from_numpy(labels[chosen]), subset,
                   raw=found.pixels[chosen] if found.pixels is not None else None,
                   paths=[found.paths[i] for i in chosen] if found.paths is not None else None,
                   skipped=found.skipped, seed=seed, groups=groups, border=found.border if spec.crop_border else 0,
                   benchmark=True, skip_unreadable=spec.skip_unreadable,
                   label_names=None if found.label_names is None else
                   {int(to_exp[c]): name for c, name in found.label_names.items()}, metric=metric)


def load_eval_set(spec: DatasetSpec, classnames: Sequence[str], seed: int = DEFAULT_SEED) -> EvalSet:
    """The index of one evaluation set of an experiment (world, preset or folder); no folder image is decoded."""
    if spec.is_world:
        return load_world_set(spec, classnames, seed)
    if spec.preset:
        return load_preset_set(spec, classnames, seed)
    return load_folder_set(spec, classnames, seed)


def load_batch(ev: EvalSet, indices: Sequence[int], preprocess: Callable,
               ) -> tuple[torch.Tensor | None, list[int], list[tuple[int, str]]]:
    """Pixels of some images of a set: (preprocessed (B,3,H,W) or None, the indices that loaded, failures).

    A folder image that fails to decode (e.g. truncated data, which the header scan cannot see) is left out and
    reported as (index, reason); it never stops the batch.
    """
    indices = [int(i) for i in indices]
    if ev.raw is not None:
        raw = ev.raw[indices]
        images = _batch_preprocess(raw, preprocess)
        if images is None:
            images = preprocess_images([Image.fromarray(a) for a in raw], preprocess)
        return images, indices, []
    tensors, loaded, failed = [], [], []
    for i in indices:
        try:
            picture = ev.picture(i)  # decoded from its file, the border cut
        except ImageDecodeError as err:
            failed.append((i, err.reason))
            continue
        tensors.append(preprocess(picture))
        loaded.append(i)
    return (torch.stack(tensors) if tensors else None), loaded, failed


def preprocess_set(ev: EvalSet, preprocess: Callable) -> torch.Tensor:
    """Every image of a set preprocessed into one tensor: the in-memory reference path, for small sets only."""
    images, loaded, failed = load_batch(ev, range(len(ev)), preprocess)
    if failed:
        raise ExperimentError(f"{ev.name}: image #{failed[0][0]} could not be decoded: {failed[0][1]}")
    return images


def project_logits(logits: torch.Tensor, groups: Sequence[Sequence[int]], targets: torch.Tensor) -> torch.Tensor:
    """ObjectNet's and the video sets' scoring: column targets[k] gets the max logit over groups[k]'s classes (0
    for an empty group), every other column -inf.

    logits: (N, C); the argmax is then the label (an index into the C classes) of the best-scoring group.
    """
    width = max(len(g) for g in groups)
    index = torch.tensor([list(g) + [g[0]] * (width - len(g)) if g else [0] * width for g in groups],
                         device=logits.device)  # (K, W)
    best = logits[:, index].amax(dim=-1)  # (N, K): padding repeats a member, so it never changes the max
    best[:, torch.tensor([not g for g in groups], device=logits.device)] = 0.0  # a video class with no ImageNet
    # class (YouTube-BB-Robust's cow, ...) scores 0, as the paper's code leaves it
    projected = torch.full_like(logits, float("-inf"))
    projected[:, targets.to(logits.device)] = best
    return projected


def set_logits(logits: torch.Tensor, ev: EvalSet) -> torch.Tensor:
    """A batch's logits (N, C) as the set scores them: grouped (ObjectNet), restricted (R, A, subsets) or as is."""
    if ev.groups is not None:
        return project_logits(logits, ev.groups, ev.class_indices)
    return restrict_logits(logits, ev.class_indices)


def restrict_logits(logits: torch.Tensor, class_indices: torch.Tensor | None) -> torch.Tensor:
    """Mask logits of classes a set does not cover to -inf, as the paper's code does for ImageNet-A/R."""
    if class_indices is None:
        return logits
    masked = torch.full_like(logits, float("-inf"))
    masked[:, class_indices] = logits[:, class_indices]
    return masked
