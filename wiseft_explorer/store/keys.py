"""Content fingerprints and cache keys, without torch: the app's warm start computes them before importing it."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import importlib.metadata
import json
import os
import uuid
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..experiment.spec import FOLDER_PREFIXES

if TYPE_CHECKING:
    from ..experiment.spec import DatasetSpec, Experiment, ModelSpec

# Bump when anything that feeds cached values changes meaning (preprocessing, evaluation, entry layout):
# every old key then misses, and old entries read back with a version mismatch are recomputed.
CACHE_VERSION = 5  # 4: sweep keys name the libraries' versions, a hub model's commit, a sample's seed; 5: merge
# methods on a shared-tower (linear-classifier) endpoint were scored as plain WiSE-FT before 081deb5
_CHUNK = 1 << 20
# The libraries whose versions change a sweep's numbers: kernels, the models and tokenizers, resizing and decoding.
_NUMERIC_LIBRARIES = ("torch", "torchvision", "open_clip_torch", "pillow")
# An hf-hub: model never fetched here has no known commit: its keys are this process's own, so that nothing it
# computes is ever read back as another commit's (the next start, with the commit fetched, computes them again).
_UNRESOLVED = f"unresolved-{uuid.uuid4().hex}"
# A checkpoint's metadata key naming the prefix of the text-tower tensors it carries (a FLYP endpoint's).
TEXT_TOWER_KEY = "text_tower"
_HEADER_LIMIT = 100 * 2**20  # a safetensors header larger than this is no checkpoint of ours
WORLD_VERSION = "world-v3"  # bump when the demo world's rendering changes, so cached sweeps are recomputed


def default_cache_dir() -> Path:
    """The cache folder: $WISEFT_CACHE_DIR, else ~/.cache/wiseft-explorer."""
    env = os.environ.get("WISEFT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wiseft-explorer"


@lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int, inode: int) -> str:
    """sha256 of a file, keyed on (path, size, mtime, inode) so an edited or replaced file is hashed again."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 hex of a file's content, streamed in chunks; memoised while its size and mtime are unchanged."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _digest(str(resolved), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    """The installed versions of the libraries that compute cached numbers, read without importing them (the warm
    start reads keys before torch loads); part of every key of a computed result."""
    versions = {}
    for name in _NUMERIC_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _jsonable(value: Any) -> Any:
    """Encode the non-JSON values that appear in key parts; unknown objects are an error, never repr()."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if type(value).__module__ == "torch" and type(value).__name__ in ("dtype", "device"):
        return str(value)  # checked by name: this module must not import torch (the app's fast path reads keys)
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **dataclasses.asdict(value)}
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    # repr() of an arbitrary object may include its memory address, which would make keys unstable.
    raise TypeError(f"cache_key: cannot encode {type(value).__name__} value {value!r}")


def cache_key(**parts: Any) -> str:
    """The one way to make a cache key: sha256 of the stable JSON of the parts plus CACHE_VERSION."""
    payload = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True,
                         separators=(",", ":"), default=_jsonable, allow_nan=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def hub_revision(source: str) -> str | None:
    """The commit an `hf-hub:` model resolves to here: the one the local Hugging Face cache holds for its default
    branch (what loading it reads, see core.loading), or None when it was never fetched."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.removeprefix("hf-hub:"), "open_clip_config.json")
    return Path(found).parent.name if isinstance(found, str) else None


def _weights_digest(source: str) -> str:
    """Content identity of a weights source: a file's digest, a local-dir:'s or transformers:'s file digests, a hub model's commit,
    else the tag."""
    if source.startswith("hf-hub:"):
        return f"{source}@{hub_revision(source) or _UNRESOLVED}"
    if source.startswith(FOLDER_PREFIXES):
        folder = Path(source.split(":", 1)[1])
        return ",".join(file_digest(p) for p in sorted(folder.iterdir()) if p.is_file())
    return file_digest(Path(source)) if source and Path(source).is_file() else source


def zeroshot_identity(spec: ModelSpec) -> dict[str, str]:
    """Content identity of the zero-shot model's weights, config and tokenizer (the part of a head's key)."""
    identity = {"model": spec.name, "zeroshot": _weights_digest(spec.pretrained or ""),
                "config": file_digest(spec.config) if spec.config else ""}
    if spec.name.startswith(("local-dir:", "hf-hub:")):  # a folder or repo named as the model holds the weights
        identity["model_dir"] = _weights_digest(spec.name)
    return identity


def experiment_fingerprint(exp: Experiment) -> dict[str, str]:
    """Content identity of both models and the prompts: the model part of every cache key."""
    return {**zeroshot_identity(exp.zeroshot),
            "finetuned": file_digest(exp.finetuned) if exp.finetuned else "", "head_policy": head_policy(exp),
            "classes": "|".join(exp.classnames), "templates": "|".join(exp.templates),
            "precision": exp.precision, "preprocess": _preprocess_identity(exp.zeroshot)}


def carries_text_tower(path: str | Path) -> bool:
    """Whether a checkpoint records a text tower in its metadata (a safetensors header read; no tensor loaded)."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size)) if 0 < size <= _HEADER_LIMIT else {}
    except (OSError, ValueError):  # unreadable, or not safetensors (a .pt file): no text tower of ours
        return False
    return isinstance(header, dict) and TEXT_TOWER_KEY in (header.get("__metadata__") or {})


def head_policy(exp: Experiment) -> str:
    """The experiment's head policy at its chosen endpoint, "auto" resolved: "text" for a fine-tuned checkpoint
    that carries a text tower, else "interpolate" (so a policy left to "auto" keys as the one it runs)."""
    if exp.head_policy != "auto":
        return exp.head_policy
    return "text" if exp.finetuned is not None and carries_text_tower(exp.finetuned) else "interpolate"


def _preprocess_identity(spec: ModelSpec) -> str:
    """The preprocessing the experiment names (its absence: what the weights' source brings, keyed with them)."""
    return json.dumps(dataclasses.asdict(spec.preprocess), sort_keys=True) if spec.preprocess else ""


def _stamp(path: Path) -> str:
    try:
        stat = path.stat()
    except OSError:
        return f"{path}:missing"
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}"


def _local_files(source: str) -> list[Path]:
    """The files a weights source names here: a file, a local-dir: or transformers: folder's files; none for a tag or hub id."""
    if source.startswith(FOLDER_PREFIXES):
        folder = Path(source.split(":", 1)[1])
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
    return [Path(source)] if source and not source.startswith("hf-hub:") and Path(source).is_file() else []


def files_version(exp: Experiment) -> str:
    """How an experiment's files stand now, by size, mtime_ns and inode (stats only, nothing read): the experiment
    file, the zero-shot weights and config, every fine-tuned checkpoint.

    What a server keeps per experiment (its runtime, warm curves, model facts) is keyed on it, so a checkpoint
    rewritten at the same path (`finetune --out` again) is seen at the next rerun, not at the next restart; the
    content keys made from the new runtime (its fingerprint's digests) then name the new weights."""
    zs = exp.zeroshot
    files = [exp.path, *_local_files(zs.pretrained or ""), *_local_files(zs.name), zs.config, exp.finetuned,
             *(e.checkpoint for e in exp.endpoints)]
    return "|".join(_stamp(Path(f)) for f in files if f is not None)


_LISTS = {"classes": "class", "templates": "template"}  # fingerprint parts that are lists joined by "|"
_SHOWN = 3  # differing list items named in a message


def _items(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def fingerprint_difference(key: str, theirs: str | None, ours: str | None) -> str:
    """One fingerprint part that differs, in words: whole list items (never cut names), or that a content differs."""
    if key in _LISTS:
        there, here = (theirs or "").split("|"), (ours or "").split("|")
        only_there = [n for n in there if n not in here]
        only_here = [n for n in here if n not in there]
        word = _LISTS[key]
        if not only_there and not only_here:
            at = next((i for i, (a, b) in enumerate(zip(there, here, strict=False)) if a != b), None)
            if at is None:  # the same names, one of them twice on one side
                return f"{len(there)} {key} there, {len(here)} here"
            return f"the same {key} in another order ({word} {at + 1} is {there[at]!r} there, {here[at]!r} here)"
        parts = [f"{_items(only_there)} only there" if only_there else "",
                 f"{_items(only_here)} only here" if only_here else ""]
        return f"{key} differ: " + "; ".join(p for p in parts if p)
    if theirs is None or ours is None:
        return f"{key} is recorded {'here' if theirs is None else 'there'} only"
    if len(theirs) > 40 or len(ours) > 40:  # content digests: which part differs is what helps
        return f"the {key} content differs (another file or version)"
    return f"{key} is {theirs!r} there, {ours!r} here"


def set_fingerprint(spec: DatasetSpec, seed: int = 0) -> str:
    """Content identity of one set's images (without decoding them); `seed` picks a folder's `limit` sample.

    A folder set is identified by what it holds (files relative to its root, their sizes and modification times;
    the mapping by content), not by where it lies: a copy on a cluster's shared disk, mounted elsewhere or copied
    with its times kept (rsync -a), has the same key, so results computed there are found here.
    """
    parts = [spec.source if spec.is_world else "folder", str(spec.limit), ",".join(spec.classes or ())]
    if spec.limit and not spec.is_world:
        parts.append(f"sample seed {seed}")
    if spec.preset:
        from ..experiment.presets import PRESET_VERSION

        parts.append(f"preset {spec.preset} {PRESET_VERSION} crop_border={spec.crop_border} "
                     f"skip_unreadable={spec.skip_unreadable}")
    if spec.is_world:
        from ..world.sets import SPECS

        world_spec = SPECS.get(spec.source.removeprefix("world:"))
        # The set's real size matters when no limit is given: a changed default must not reuse old entries.
        parts += [WORLD_VERSION, str(spec.limit or (world_spec.size if world_spec else ""))]
    else:
        root = Path(spec.source)
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        parts += [f"{p.relative_to(root) if p != root else p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}"
                  for p in files]
        if spec.mapping:
            parts.append(file_digest(spec.mapping))
        parts += _outside_files(spec, root)
    return "\n".join(parts)


def _outside_files(spec: DatasetSpec, root: Path) -> list[str]:
    """Digests of the files a set's reader reads outside its `source` folder: ObjectNet's sibling mappings/."""
    if spec.preset != "objectnet" or root.is_file():
        return []
    from ..experiment.presets import objectnet_folders

    mappings = objectnet_folders(root)[1]
    if mappings.parent == root or not mappings.is_dir():
        return []
    return [f"mappings/{p.name}:{file_digest(p)}" for p in sorted(mappings.iterdir()) if p.is_file()]
