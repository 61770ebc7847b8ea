"""An experiment as data: the validated dataclasses a TOML file becomes (parse.py reads the files)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

# auto: "text" for an endpoint that carries a text tower (FLYP), else "interpolate"; text: θ_α's head is the
# zero-shot head of the interpolated text tower; interpolate: the lerp of the two heads (for FLYP, the cheap
# approximation); zeroshot / finetuned: one endpoint's head all along the line.
HEAD_POLICIES = ("auto", "interpolate", "zeroshot", "finetuned", "text")
PRECISIONS = ("fp32", "bf16", "fp16")
REMOTE_PREFIXES = ("hf-hub:", "local-dir:")
# Folders of other libraries' checkpoints, mapped to open_clip's layout (core.hf_clip, core.timm_clip).
TRANSFORMERS_PREFIX, TIMM_PREFIX = "transformers:", "timm:"
FOLDER_PREFIXES = ("local-dir:", TRANSFORMERS_PREFIX)  # zeroshot.pretrained values that name a local folder


class ExperimentError(ValueError):
    """A problem in an experiment file, naming the key or file and the fix."""


@dataclass(frozen=True)
class PreprocessSpec:
    """The image preprocessing an experiment names ([zeroshot.preprocess]): a tag's config, then explicit values."""

    tag: str | None = None  # an open_clip pretrained tag whose preprocessing config to take
    tag_model: str | None = None  # the open_clip model that tag belongs to (None: zeroshot.model)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: int | None = None
    interpolation: str | None = None  # "bicubic" or "bilinear"
    resize_mode: str | None = None  # "shortest", "longest" or "squash"
    crop_pct: float | None = None  # timm's eval crop: resize the shortest side to size / crop_pct, centre-crop size

    def overrides(self) -> dict[str, object]:
        """The explicit values, in open_clip's PreprocessCfg names (those given only)."""
        values = {"mean": self.mean, "std": self.std, "size": self.size, "interpolation": self.interpolation,
                  "resize_mode": self.resize_mode}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class ModelSpec:
    """Where the zero-shot CLIP comes from: open_clip name + tag, file, hf-hub: id, local-dir: or transformers:."""

    name: str
    pretrained: str | None = None
    config: Path | None = None
    preprocess: PreprocessSpec | None = None  # None: what the weights' source brings (a file: open_clip's defaults)


@dataclass(frozen=True)
class DatasetSpec:
    """One evaluation set: the built-in world (`world:<set>`), a dataset preset's folder or an ImageFolder folder."""

    name: str
    source: str
    classes: tuple[str, ...] | None = None
    mapping: Path | None = None
    limit: int | None = None
    preset: str | None = None  # a key of presets.PRESETS: the set's layout, labels and scoring come from it
    # A preset set reads images as torchvision's loader does, and an unreadable file fails the sweep unless this is
    # set: then it is left out of the set, counted and shown.
    skip_unreadable: bool = False
    crop_border: bool = False  # ObjectNet: cut its red frame before preprocessing (the paper's code does not)

    @property
    def is_world(self) -> bool:
        """True for a set of the built-in demo world."""
        return self.source.startswith("world:")

    @property
    def preset_key(self) -> str:
        """The preset this set is read by; an error for a set that names none."""
        if self.preset is None:
            raise ExperimentError(f"{self.name}: not a preset set (it names no `preset`)")
        return self.preset


@dataclass(frozen=True)
class Endpoint:
    """One fine-tuned checkpoint of an experiment, by name (e.g. "end-to-end" and "linear classifier")."""

    name: str
    checkpoint: Path


@dataclass(frozen=True)
class Experiment:
    """Everything one WiSE-FT study needs: both models, classes, prompts and the sets to evaluate."""

    name: str
    zeroshot: ModelSpec
    finetuned: Path | None
    classnames: tuple[str, ...]
    templates: tuple[str, ...]
    id_set: DatasetSpec
    id_val: DatasetSpec | None = None
    shifts: tuple[DatasetSpec, ...] = ()
    head_policy: str = "auto"
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 256
    cache_dir: Path | None = None
    path: Path | None = field(default=None, compare=False)
    workers: int | None = None  # image-decoding worker processes; None = from the core count (stream.py)
    seed: int = 0  # the fair order sets stream in, and the sample `limit` draws from a folder
    # Every fine-tuned endpoint ([[finetuned]] tables, or the one [finetuned]); `finetuned` is the chosen one's file.
    endpoints: tuple[Endpoint, ...] = ()
    endpoint: str | None = None  # the chosen endpoint's name
    # Pair a fine-tuned checkpoint with zero-shot weights other than those it records it was fine-tuned from.
    allow_other_zeroshot: bool = False

    @property
    def endpoint_names(self) -> list[str]:
        """The fine-tuned endpoints' names, in the file's order."""
        return [e.name for e in self.endpoints]

    def with_endpoint(self, name: str | None) -> Experiment:
        """The same experiment with another fine-tuned endpoint chosen (None: the first)."""
        if not self.endpoints or name in (None, self.endpoint):
            return self
        chosen = next((e for e in self.endpoints if e.name == name), None)
        if chosen is None:
            raise ExperimentError(f"{self.name}: no fine-tuned endpoint named {name!r} (known: "
                                  f"{', '.join(self.endpoint_names)})")
        return dataclasses.replace(self, finetuned=chosen.checkpoint, endpoint=chosen.name)

    @property
    def eval_sets(self) -> tuple[DatasetSpec, ...]:
        """ID set, then the held-out ID split (if any), then the shift sets."""
        return (self.id_set,) + ((self.id_val,) if self.id_val else ()) + self.shifts
