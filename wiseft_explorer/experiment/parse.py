"""Experiment files: a TOML file -> validated dataclasses, one clear error per bad key or missing file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from .labelsets import CLASS_LISTS, TEMPLATE_SETS, class_list, template_list
from .locations import DEFAULT_EXPERIMENT, listed_experiments, named_experiment
from .preprocessing import looks_like_path, parse_preprocess
from .presets import PRESETS, preset_of, preset_options
from .spec import (
    FOLDER_PREFIXES,
    HEAD_POLICIES,
    PRECISIONS,
    TIMM_PREFIX,
    TRANSFORMERS_PREFIX,
    DatasetSpec,
    Endpoint,
    Experiment,
    ExperimentError,
    ModelSpec,
)

# The weights file of a transformers or timm folder named by [finetuned] checkpoint (what save_pretrained writes).
FOLDER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")

_TOP_KEYS = {"name", "device", "precision", "head_policy", "batch_size", "cache_dir", "workers", "seed",
             "allow_other_zeroshot", "zeroshot", "finetuned", "classes", "id", "id_val", "shifts"}
_SECTION_KEYS = {
    "zeroshot": {"model", "pretrained", "config", "preprocess"},
    "finetuned": {"checkpoint", "name"},
    "classes": {"names", "file", "templates"},
    "dataset": {"name", "source", "classes", "mapping", "limit", "preset", "skip_unreadable", "crop_border"},
}


def _check_keys(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ExperimentError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def _typed(table: dict, key: str, kind: type | tuple, where: str, default: Any = None) -> Any:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ExperimentError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")
    return value


def _existing(base: Path, value: str, where: str) -> Path:
    path = (base / value).expanduser().resolve()
    if not path.exists():
        raise ExperimentError(f"{where}: file not found: {path} (fix the path; relative paths start at {base})")
    return path


def _resolve_pretrained(base: Path, value: str | None, where: str) -> str | None:
    """Keep open_clip tags and hub ids as they are; turn anything that looks like a path into an absolute one."""
    if value is None:
        return None
    prefix = next((p for p in FOLDER_PREFIXES if value.startswith(p)), None)
    if prefix is not None:
        return prefix + str(_existing(base, value.removeprefix(prefix), where))
    if value.startswith("hf-hub:"):
        return value
    return str(_existing(base, value, where)) if looks_like_path(value) else value


def _classnames(table: dict, base: Path) -> tuple[str, ...]:
    names = _typed(table, "names", (list, str), "classes")
    file = _typed(table, "file", str, "classes")
    if (names is None) == (file is None):
        raise ExperimentError("classes: give exactly one of 'names' (a list, \"imagenet\" or \"cifar10\") or 'file'")
    if file is not None:
        lines = _existing(base, file, "classes.file").read_text(encoding="utf-8").splitlines()
        names = [line.strip() for line in lines if line.strip()]
    elif isinstance(names, str):
        if names not in CLASS_LISTS:
            raise ExperimentError(f"classes.names: expected a list or one of {CLASS_LISTS}, got {names!r}")
        names = list(class_list(names))
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ExperimentError("classes.names: expected a non-empty list of non-empty strings")
    # open_clip's ImageNet list (like OpenAI's) repeats 'missile' and 'sunglasses' for distinct classes: keep it as is.
    if len(set(names)) != len(names) and table.get("names") not in CLASS_LISTS:
        dup = next(n for n in names if names.count(n) > 1)
        raise ExperimentError(f"classes.names: class '{dup}' appears twice")
    return tuple(names)


def _templates(table: dict) -> tuple[str, ...]:
    value = _typed(table, "templates", (list, str), "classes", default="openai")
    if isinstance(value, str):
        if value not in TEMPLATE_SETS:
            raise ExperimentError(f"classes.templates: expected a list or one of {TEMPLATE_SETS}, got {value!r}")
        return builtin_templates(value)
    if not value or not all(isinstance(t, str) and "{}" in t for t in value):
        raise ExperimentError("classes.templates: every template must be a string containing '{}'")
    return tuple(value)


def builtin_templates(kind: str) -> tuple[str, ...]:
    """A built-in prompt set (one of labelsets.TEMPLATE_SETS) as '{}' format strings."""
    return template_list(kind)


def _dataset(table: Any, base: Path, where: str, default_name: str, classnames: tuple[str, ...]) -> DatasetSpec:
    if not isinstance(table, dict):
        raise ExperimentError(f"{where}: expected a table with 'source', got {type(table).__name__}")
    _check_keys(table, _SECTION_KEYS["dataset"], where)
    source = _typed(table, "source", str, where)
    if not source:
        raise ExperimentError(f"{where}.source: missing (a folder path or world:<set>)")
    preset = _typed(table, "preset", str, where)
    if preset is not None:
        if preset not in PRESETS:
            raise ExperimentError(f"{where}.preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
        clash = sorted({"classes", "mapping"} & set(table))
        if clash:
            raise ExperimentError(f"{where}: a preset brings its own classes and layout; remove {clash[0]!r}")
        if source.startswith("world:"):
            raise ExperimentError(f"{where}.source: a preset reads the dataset's folder, not a world: set")
        default_name = preset_of(preset).title
    if not source.startswith("world:"):
        source = str(_existing(base, source, f"{where}.source"))
    subset = _typed(table, "classes", list, where)
    if subset is not None:
        unknown = [c for c in subset if c not in classnames]
        if unknown:
            raise ExperimentError(f"{where}.classes: '{unknown[0]}' is not one of the experiment's class names")
        subset = tuple(subset)
    mapping = _typed(table, "mapping", str, where)
    limit = _typed(table, "limit", int, where)
    if limit is not None and limit < 1:
        raise ExperimentError(f"{where}.limit: expected a positive number of images, got {limit}")
    return DatasetSpec(name=_typed(table, "name", str, where, default=default_name), source=source,
                       classes=subset, mapping=_existing(base, mapping, f"{where}.mapping") if mapping else None,
                       limit=limit, preset=preset, **preset_options(table, preset, where))


def parse_experiment(data: dict, base: Path, path: Path | None = None, *, for_finetuning: bool = False) -> Experiment:
    """Validate an experiment's TOML table; `base` is where relative paths start.

    `for_finetuning`: the [finetuned] checkpoint may not exist yet (fine-tuning is what writes it).
    """
    _check_keys(data, _TOP_KEYS, "experiment")
    for section in ("zeroshot", "id"):
        if not isinstance(data.get(section), dict):
            raise ExperimentError(f"experiment: missing table [{section}]")
    classes_table = _default_classes(data)
    zs = data["zeroshot"]
    _check_keys(zs, _SECTION_KEYS["zeroshot"], "zeroshot")
    model = _typed(zs, "model", str, "zeroshot")
    if not model:
        raise ExperimentError("zeroshot.model: missing (an open_clip model name such as 'ViT-B-32')")
    config = _typed(zs, "config", str, "zeroshot")
    spec = ModelSpec(model, _resolve_pretrained(base, _typed(zs, "pretrained", str, "zeroshot"), "zeroshot.pretrained"),
                     _existing(base, config, "zeroshot.config") if config else None,
                     parse_preprocess(zs.get("preprocess")))
    endpoints = _endpoints(data.get("finetuned", {}), base, path, for_finetuning)
    _check_keys(classes_table, _SECTION_KEYS["classes"], "classes")
    classnames = _classnames(classes_table, base)
    shifts = _typed(data, "shifts", list, "experiment", default=[])
    exp = Experiment(
        name=_typed(data, "name", str, "experiment", default=path.stem if path else "experiment"),
        zeroshot=spec,
        finetuned=endpoints[0].checkpoint if endpoints else None,
        classnames=classnames,
        templates=_templates(classes_table),
        id_set=_dataset(data["id"], base, "id", "ID", classnames),
        id_val=_dataset(data["id_val"], base, "id_val", "ID-val", classnames) if "id_val" in data else None,
        shifts=tuple(_dataset(s, base, f"shifts[{i}]", f"shift-{i}", classnames) for i, s in enumerate(shifts)),
        head_policy=_choice(data, "head_policy", HEAD_POLICIES, "auto"),
        device=_typed(data, "device", str, "experiment", default="auto"),
        precision=_choice(data, "precision", PRECISIONS, "fp32"),
        batch_size=_typed(data, "batch_size", int, "experiment", default=256),
        cache_dir=(base / data["cache_dir"]).resolve() if _typed(data, "cache_dir", str, "experiment") else None,
        path=path,
        workers=_typed(data, "workers", int, "experiment"),
        seed=_typed(data, "seed", int, "experiment", default=0),
        endpoints=endpoints,
        endpoint=endpoints[0].name if endpoints else None,
        allow_other_zeroshot=_typed(data, "allow_other_zeroshot", bool, "experiment", default=False),
    )
    names = [s.name for s in exp.eval_sets]
    if len(set(names)) != len(names):
        raise ExperimentError(f"experiment: two sets share the name '{next(n for n in names if names.count(n) > 1)}'")
    if exp.batch_size < 1:
        raise ExperimentError(f"experiment.batch_size: expected a positive int, got {exp.batch_size}")
    if exp.workers is not None and exp.workers < 0:
        raise ExperimentError(f"experiment.workers: expected 0 (decode in the main process) or more, got {exp.workers}")
    return exp


def _default_classes(data: dict) -> dict:
    """The [classes] table, or, when it is absent and [id] is a preset, that preset's class list and prompts."""
    if "classes" in data:
        if not isinstance(data["classes"], dict):
            raise ExperimentError("classes: expected a table with 'names' or 'file'")
        return data["classes"]
    preset = data["id"].get("preset")
    if isinstance(preset, str) and preset not in PRESETS:
        raise ExperimentError(f"id.preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    if preset not in PRESETS:
        raise ExperimentError("experiment: missing table [classes] (class names and prompt templates), which only "
                              "an [id] preset can stand in for")
    return {"names": PRESETS[preset].classes, "templates": PRESETS[preset].templates}


def _choice(data: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = _typed(data, key, str, "experiment", default=default)
    if value not in allowed:
        raise ExperimentError(f"experiment.{key}: expected one of {allowed}, got {value!r}")
    return value


def _endpoints(value: Any, base: Path, path: Path | None, for_finetuning: bool) -> tuple[Endpoint, ...]:
    """[finetuned] (one endpoint, named "fine-tuned" unless it says) or [[finetuned]] tables, each with a name."""
    # [finetuned] may be absent before fine-tuning (`wiseft-explorer finetune` makes the checkpoint).
    tables = [value] if isinstance(value, dict) else value
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ExperimentError("finetuned: expected a table with 'checkpoint' ([finetuned]), or [[finetuned]] "
                              "tables with 'name' and 'checkpoint'")
    out = []
    for i, table in enumerate(tables):
        where = "finetuned" if isinstance(value, dict) else f"finetuned[{i}]"
        _check_keys(table, _SECTION_KEYS["finetuned"], where)
        checkpoint = _typed(table, "checkpoint", str, where)
        if checkpoint is None:
            if len(tables) > 1 or table:
                raise ExperimentError(f"{where}.checkpoint: missing (the fine-tuned checkpoint's path)")
            continue
        name = _typed(table, "name", str, where, default=None if len(tables) > 1 else "fine-tuned")
        if not name:
            raise ExperimentError(f"{where}.name: missing; name every [[finetuned]] endpoint (e.g. \"end-to-end\")")
        out.append(Endpoint(name, _finetuned_path(base, checkpoint, path, for_finetuning)))
    names = [e.name for e in out]
    if len(set(names)) != len(names):
        raise ExperimentError(f"finetuned: two endpoints share the name {next(n for n in names if names.count(n) > 1)!r}")
    return tuple(out)


def _finetuned_path(base: Path, value: str, path: Path | None, for_finetuning: bool) -> Path:
    prefix = next((p for p in (TRANSFORMERS_PREFIX, TIMM_PREFIX) if value.startswith(p)), None)
    if prefix is not None:  # a folder: its weights file stands for it (the format is told by the weights' names)
        folder = _existing(base, value.removeprefix(prefix), "finetuned.checkpoint")
        found = next((folder / n for n in FOLDER_WEIGHTS if (folder / n).is_file()), None)
        if found is None:
            raise ExperimentError(f"finetuned.checkpoint: {folder} has no weights file (expected one of "
                                  f"{', '.join(FOLDER_WEIGHTS)}, as save_pretrained writes)")
        return found
    resolved = (base / value).expanduser().resolve()
    if not resolved.exists() and not for_finetuning:
        raise ExperimentError(
            f"finetuned.checkpoint: file not found: {resolved}; fine-tune first with `wiseft-explorer finetune "
            f"--experiment {path or 'EXPERIMENT.toml'} --train TRAIN_FOLDER --out {resolved}`, or fix the path")
    return resolved


def load_experiment(path: str | Path | None = None, *, for_finetuning: bool = False) -> Experiment:
    """Read and validate an experiment TOML file (default: the built-in demo).

    A bare file name that is not here names a built-in experiment or one of the user's folder ("demo-precise.toml").
    """
    given = Path(path).expanduser() if path else DEFAULT_EXPERIMENT
    found = given if given.is_file() or given.parent != Path(".") else named_experiment(given.name) or given
    path = found.resolve()
    if not path.is_file():
        names = ", ".join(p.name for p in listed_experiments())
        raise ExperimentError(f"experiment file not found: {path} (pass --experiment with a TOML file, or the name "
                              f"of one of these: {names})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:  # quoted whole (line and column); tomllib's frames are noise
        raise ExperimentError(f"{path.name}: not valid TOML: {err}") from None
    return parse_experiment(data, path.parent, path, for_finetuning=for_finetuning)


def load_mapping(path: Path | None) -> dict[str, str] | None:
    """Folder-name -> class-name mapping from a JSON object file (or None)."""
    if path is None:
        return None
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:  # quoted whole (line and column); the parser's frames are noise
        raise ExperimentError(f"{path.name}: mapping must be a JSON object of folder -> class name: {err}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ExperimentError(f"{path.name}: mapping must be a JSON object of folder -> class name")
    return mapping
