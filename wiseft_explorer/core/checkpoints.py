"""Checkpoint files: our safetensors format, weights-only .pt loading, compatibility checks, trusted conversion."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..store.atomic import atomic_path

CLASSIFIER_FORMAT = "wiseft-explorer/classifier"
OPEN_CLIP_FORMAT = "wiseft-explorer/open_clip"
PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt"}
_COMPACT = "__compact_rows__"  # metadata key: {tensor name: full shape} for tensors stored without zero rows


class CheckpointError(ValueError):
    """A checkpoint that cannot be used, with what is wrong and how to fix it."""


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any] | None = None,
                    dtype: torch.dtype | None = None, compact: bool = True) -> Path:
    """Write tensors + JSON metadata to one .safetensors file, atomically; all-zero rows stored compactly."""
    path = Path(path)
    out: dict[str, torch.Tensor] = {}
    compacted: dict[str, list[int]] = {}  # distinct name: `compact` is the caller's switch
    for key, value in tensors.items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        rows = _nonzero_rows(value) if compact else None
        # Token embeddings of a model trained on a small vocabulary are mostly zero rows: store only the used ones.
        if rows is not None and rows.numel() < value.shape[0] // 2:
            out[f"{key}::rows"] = rows
            out[f"{key}::values"] = value[rows].contiguous()
            compacted[key] = list(value.shape)
        else:
            out[key] = value.contiguous()
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    if compacted:
        meta[_COMPACT] = json.dumps(compacted)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(out, str(tmp), metadata=meta)
    return path


def load_full_state(model: torch.nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Strictly load a full open_clip state dict, with a clear error naming the first mismatches."""
    reference = model.state_dict()
    if "logit_scale" in state and state["logit_scale"].shape != reference["logit_scale"].shape:
        state["logit_scale"] = state["logit_scale"].reshape(reference["logit_scale"].shape)
    check_compatible(reference, state, f"checkpoint {name}")
    model.load_state_dict(state, strict=True)


def _nonzero_rows(value: torch.Tensor) -> torch.Tensor | None:
    if value.ndim != 2 or value.shape[0] < 64 or not value.is_floating_point():
        return None
    return (value != 0).any(dim=1).nonzero().flatten()


def check_checkpoint_file(path: str | Path) -> Path:
    """The path of a checkpoint file that exists and is not empty, else CheckpointError (cheap: nothing is read)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name}: the file is empty (0 bytes); re-download or re-export it")
    return path


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint safely: safetensors, or .pt/.pth/.bin via torch.load(weights_only=True) only."""
    path = check_checkpoint_file(path)
    if path.suffix in PICKLE_SUFFIXES and not _is_safetensors(path):
        tensors, metadata = _load_weights_only(path), dict[str, str]()
    else:
        tensors, metadata = _load_safetensors(path)
    check_finite(tensors, path.name)
    return tensors, metadata


def _is_safetensors(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(9)
    # safetensors starts with an 8-byte little-endian header length followed by '{'.
    return len(head) == 9 and head[8:9] == b"{"


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw_meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path.name}: not a readable safetensors file ({err}); the file may be truncated "
                              "or corrupt: re-download or re-export it") from err
    metadata: dict[str, Any] = {}
    for key, value in raw_meta.items():
        try:
            metadata[key] = json.loads(value)
        except json.JSONDecodeError:
            metadata[key] = value  # files written by other tools keep plain strings
    for key, shape in metadata.pop(_COMPACT, {}).items():
        rows, values = tensors.pop(f"{key}::rows"), tensors.pop(f"{key}::values")
        full = torch.zeros(shape, dtype=values.dtype)
        full[rows] = values
        tensors[key] = full
    return tensors, metadata


def _load_weights_only(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, TypeError, EOFError) as err:
        raise CheckpointError(
            f"{path.name}: refused: it is not a plain tensor file (weights_only load failed: "
            f"{str(err).splitlines()[0][:160]}). Files that need a full unpickle can run arbitrary code, so they "
            f"are never loaded. If you trust it (e.g. a checkpoint saved by the WiSE-FT paper code), convert it: "
            f"wiseft-explorer convert --trust-pickle {path.name} OUT.safetensors") from err
    return as_state_dict(obj, path.name)


def as_state_dict(obj: Any, name: str) -> dict[str, torch.Tensor]:
    """A state dict from a loaded object: {"state_dict": ...} unwrapped, DDP's "module." prefix dropped."""
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{name}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    # DataParallel / DDP checkpoints prefix every key with 'module.'.
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k.removeprefix("module."): v for k, v in obj.items()}
    return dict(obj)


def check_finite(tensors: dict[str, torch.Tensor], name: str) -> None:
    """Refuse weights containing NaN or Inf, naming the first bad tensor."""
    for key, value in tensors.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{name}: tensor '{key}' has {bad} NaN/Inf values; the checkpoint is damaged "
                                  "(a diverged run or a broken export)")


def check_compatible(reference: dict[str, torch.Tensor], candidate: dict[str, torch.Tensor], what: str) -> None:
    """Raise naming the first missing/extra keys and shape mismatches between two state dicts."""
    missing = [k for k in reference if k not in candidate]
    extra = [k for k in candidate if k not in reference]
    shapes = [(k, tuple(reference[k].shape), tuple(candidate[k].shape)) for k in reference
              if k in candidate and reference[k].shape != candidate[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
    if extra:
        problems.append(f"{len(extra)} unexpected keys (first: {', '.join(extra[:3])})")
    if shapes:
        k, want, got = shapes[0]
        problems.append(f"{len(shapes)} shape mismatches (first: {k} expected {want}, got {got})")
    if problems:
        raise CheckpointError(f"{what} does not match the zero-shot model's architecture: " + "; ".join(problems)
                              + ". Use a checkpoint fine-tuned from the same open_clip model.")


def split_open_clip_state(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split a full open_clip state dict into (visual.* tensors, everything else)."""
    visual = {k: v for k, v in tensors.items() if k.startswith("visual.")}
    return visual, {k: v for k, v in tensors.items() if not k.startswith("visual.")}


def paper_state_to_classifier(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a WiSE-FT paper-code ImageClassifier state dict to our layout (visual.*, head.*, text tower if kept).

    The paper's zero-shot file has no text transformer (src/wise_ft.py deletes it); its token embedding and final
    layer norm alone are no text tower, so they are kept only with the transformer."""
    prefix = "image_encoder.model."
    keep_text = any(k.startswith(prefix + "transformer.") for k in state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(prefix + "visual.") or (keep_text and key.startswith(prefix)):
            out[key.removeprefix(prefix)] = value
        elif key.startswith("classification_head."):
            out["head." + key.removeprefix("classification_head.")] = value
    if "head.weight" not in out or not any(k.startswith("visual.") for k in out):
        raise CheckpointError("the pickled object is not a WiSE-FT paper classifier (no image_encoder.model.visual.* "
                              "and classification_head.* weights)")
    return out


def align_head_classes(state: dict[str, torch.Tensor], trained: list[str] | None, wanted: list[str] | tuple[str, ...],
                       name: str) -> str | None:
    """Reorder a fine-tuned head's rows from the class order it was trained with to the experiment's (in place).

    Same names in another order: the rows are permuted and a one-line note is returned. Different names: refused,
    with the two lists side by side, because row i of the head would silently score the wrong class.
    """
    wanted = list(wanted)
    if not trained or list(trained) == wanted or "head.weight" not in state:
        return None
    if sorted(trained) != sorted(wanted) or len(set(trained)) != len(trained):
        pairs = [(i, a, b) for i, (a, b) in enumerate(zip(wanted, trained, strict=False)) if a != b]
        shown = "; ".join(f"#{i}: experiment {a!r}, checkpoint {b!r}" for i, a, b in pairs[:3])
        extra = sorted(set(trained) - set(wanted))[:3]
        missing = sorted(set(wanted) - set(trained))[:3]
        raise CheckpointError(
            f"{name} was fine-tuned on other classes than the experiment names ({len(trained)} vs {len(wanted)}; "
            f"side by side: {shown or 'same names up to the shorter list'}"
            + (f"; only in the checkpoint: {extra}" if extra else "") + (f"; only in the experiment: {missing}"
                                                                          if missing else "")
            + "): give [classes] exactly the class names it was fine-tuned with (its metadata lists them)")
    rows = torch.tensor([trained.index(c) for c in wanted])
    for key in ("head.weight", "head.bias"):
        if key in state:
            state[key] = state[key][rows]
    moved = sum(1 for i, c in enumerate(wanted) if trained[i] != c)
    return (f"{name} lists its {len(wanted)} classes in another order than the experiment; its head rows were "
            f"reordered to the experiment's order ({moved} moved)")
