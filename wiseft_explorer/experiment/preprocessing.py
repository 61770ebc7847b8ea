"""The image preprocessing an experiment names: the [zeroshot.preprocess] table read and checked, and said in words.

A weights file carries no preprocessing, so open_clip gives a model built from one its defaults (OpenAI CLIP's mean,
std, bicubic resize of the shortest side); SigLIP, DFN and other families were trained with their own. The table
takes a tag's config (`tag`, of `model` or zeroshot.model), explicit values over it, or both. Torch-free: the app
names the preprocessing before any model loads; `core.loading` applies it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .spec import REMOTE_PREFIXES, TRANSFORMERS_PREFIX, ExperimentError, ModelSpec, PreprocessSpec

PREPROCESS_KEYS = ("tag", "model", "mean", "std", "size", "interpolation", "resize_mode", "crop_pct")
INTERPOLATIONS = ("bicubic", "bilinear")  # what open_clip's eval transform accepts
RESIZE_MODES = ("shortest", "longest", "squash")
_WHERE = "zeroshot.preprocess"


def _channels(table: dict, key: str) -> tuple[float, ...] | None:
    value = table.get(key)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 3
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ExperimentError(f"{_WHERE}.{key}: expected three numbers (red, green, blue), got {value!r}")
    if key == "std" and min(value) <= 0:
        raise ExperimentError(f"{_WHERE}.std: every value must be above 0, got {value!r}")
    return tuple(float(v) for v in value)


def _word(table: dict, key: str, allowed: tuple[str, ...]) -> str | None:
    value = table.get(key)
    if value is not None and value not in allowed:
        raise ExperimentError(f"{_WHERE}.{key}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _text(table: dict, key: str) -> str | None:
    value = table.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ExperimentError(f"{_WHERE}.{key}: expected a non-empty string, got {value!r}")
    return value


def parse_preprocess(table: Any) -> PreprocessSpec | None:
    """[zeroshot.preprocess] as a PreprocessSpec (None when absent), each bad value named with what it takes."""
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ExperimentError(f"{_WHERE}: expected a table ([zeroshot.preprocess]), got {type(table).__name__}")
    unknown = sorted(set(table) - set(PREPROCESS_KEYS))
    if unknown:
        raise ExperimentError(f"{_WHERE}: unknown key '{unknown[0]}' (allowed: {', '.join(PREPROCESS_KEYS)})")
    if not table:
        raise ExperimentError(f"{_WHERE}: empty; give `tag` (whose preprocessing to take) or values such as "
                              "mean, std, size, interpolation, resize_mode")
    size = table.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        raise ExperimentError(f"{_WHERE}.size: expected a positive number of pixels, got {size!r}")
    crop = table.get("crop_pct")
    if crop is not None and (not isinstance(crop, int | float) or isinstance(crop, bool) or not 0 < crop <= 1):
        raise ExperimentError(f"{_WHERE}.crop_pct: expected a fraction in (0, 1] (timm's, e.g. 0.9), got {crop!r}")
    if crop is not None and table.get("resize_mode", "shortest") != "shortest":
        raise ExperimentError(f"{_WHERE}.crop_pct: a centre crop of the resized shortest side; it needs "
                              "resize_mode = \"shortest\" (or none)")
    if "model" in table and "tag" not in table:
        raise ExperimentError(f"{_WHERE}.model: names whose `tag` to take; add the tag or remove it")
    return PreprocessSpec(tag=_text(table, "tag"), tag_model=_text(table, "model"), mean=_channels(table, "mean"),
                          std=_channels(table, "std"), size=size,
                          interpolation=_word(table, "interpolation", INTERPOLATIONS),
                          resize_mode=_word(table, "resize_mode", RESIZE_MODES),
                          crop_pct=None if crop is None else float(crop))


def preprocess_source(spec: ModelSpec) -> str:
    """Where the model's preprocessing comes from, in words (the values themselves need the model loaded)."""
    pp = spec.preprocess
    if pp is not None:
        parts = [f"open_clip tag '{pp.tag}' of {pp.tag_model or spec.name}"] if pp.tag else []
        parts += [f"{key} {value}" for key, value in pp.overrides().items()]
        parts += [f"crop_pct {pp.crop_pct}"] if pp.crop_pct is not None else []
        return "[zeroshot.preprocess]: " + ", ".join(parts)
    pretrained = spec.pretrained or ""
    if pretrained.startswith(TRANSFORMERS_PREFIX):
        return "the transformers folder's preprocessor_config.json (OpenAI CLIP's values where it has none)"
    if spec.name.startswith(REMOTE_PREFIXES) or pretrained.startswith(REMOTE_PREFIXES):
        return "the model folder's open_clip_config.json"
    if pretrained and not looks_like_path(pretrained):
        return f"open_clip tag '{pretrained}'"
    return ("open_clip's defaults, OpenAI CLIP's (a weights file carries none; weights of SigLIP, DFN and other "
            "families need [zeroshot.preprocess])")


def looks_like_path(value: str) -> bool:
    """Whether zeroshot.pretrained names a file (else an open_clip tag)."""
    return "/" in value or "\\" in value or Path(value).suffix in {".safetensors", ".pt", ".pth", ".bin"}


def preprocess_table(pp: PreprocessSpec | None) -> dict[str, Any] | None:
    """A PreprocessSpec back as its [zeroshot.preprocess] table (None when the experiment names none)."""
    if pp is None:
        return None
    table: dict[str, Any] = {"tag": pp.tag, "model": pp.tag_model}
    table.update({k: list(v) if isinstance(v, tuple) else v for k, v in pp.overrides().items()})
    table["crop_pct"] = pp.crop_pct
    return {k: v for k, v in table.items() if v is not None}
