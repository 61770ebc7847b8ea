"""Export theta_alpha: our classifier checkpoint, or a full open_clip state dict that open_clip loads as is.

The open_clip file is not the classifier theta_alpha: it holds theta_alpha's image tower with the zero-shot text
tower, and open_clip's strict loader refuses any key it does not know, so theta_alpha's head goes to a sibling
file, `<name>.head.safetensors` (tensors `weight` and `bias`: logits = features @ weight.T + bias).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.checkpoints import OPEN_CLIP_FORMAT, save_checkpoint
from ..core.models import classifier_metadata
from .runtime import ExperimentRuntime

EXPORT_FORMATS = ("classifier", "open_clip")
HEAD_FORMAT = "wiseft-explorer/head"


def _provenance(runtime: ExperimentRuntime, alpha: float) -> dict:
    exp = runtime.experiment
    assert exp.finetuned is not None  # load_models refuses an experiment without a fine-tuned checkpoint
    method = runtime.fingerprint.get("method")  # a merge method's path (evaluation.merging); none for WiSE-FT
    # A timm classifier pair (core.timm_clip.token_layout): the head scores the un-projected, un-normalised token.
    token = {} if runtime.models.zeroshot.normalize else {"features": "token"}
    return {"alpha": alpha, "head_policy": exp.head_policy, "zeroshot": exp.zeroshot.pretrained,
            "finetuned": str(exp.finetuned.name), "experiment": exp.name, **({"method": method} if method else {}),
            **token}


def head_path(out: str | Path) -> Path:
    """Where an open_clip export's head goes: `clip.safetensors` -> `clip.head.safetensors`."""
    out = Path(out)
    return out.with_name(f"{out.stem}.head.safetensors")


def export_interpolated(runtime: ExperimentRuntime, alpha: float, out: str | Path, fmt: str = "classifier") -> Path:
    """Write the interpolated model at alpha to a .safetensors file (atomically)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out.name}: exports are .safetensors files; name the output *.safetensors")
    exp, pair = runtime.experiment, runtime.models
    state, provenance = runtime.space.state_at(alpha), _provenance(runtime, alpha)
    if fmt == "classifier":
        meta = classifier_metadata(pair.clip, exp.classnames, recipe={"wiseft": provenance})
        return save_checkpoint(out, state, meta)
    if "features" in provenance:
        raise ValueError("θ_α of a timm classifier pair scores timm's un-projected, un-normalised class token, which "
                         "an open_clip CLIP does not compute: export it in the classifier format")
    # Full open_clip model: interpolated image tower, the zero-shot text tower (what WiSE-FT leaves untouched).
    full = {k: v.detach().cpu() for k, v in pair.clip.model.state_dict().items()}
    full.update({k: v for k, v in state.items() if k.startswith("visual.")})
    # The head beside it, first: open_clip.create_model(name, pretrained=file) loads strictly, so an extra key in
    # the model's file would break the promise that open_clip loads it as is.
    _save_head(runtime, state, head_path(out), provenance)
    # No compact rows here: open_clip's own loader must read this file as a plain state dict.
    return save_checkpoint(out, full, {"format": OPEN_CLIP_FORMAT, "model": pair.clip.name, "head_file":
                                       head_path(out).name, **provenance}, compact=False)


def _save_head(runtime: ExperimentRuntime, state: dict, path: Path, provenance: dict) -> Path:
    """theta_alpha's head alone: `weight` (C, D) and `bias` (C,), with the class names in order."""
    return save_checkpoint(path, {"weight": state["head.weight"], "bias": state["head.bias"]},
                           {"format": HEAD_FORMAT, "model": runtime.models.clip.name,
                            "classnames": list(runtime.experiment.classnames), **provenance}, compact=False)


def export_bytes(runtime: ExperimentRuntime, alpha: float, fmt: str = "classifier", head: bool = False) -> bytes:
    """The interpolated model at alpha as .safetensors bytes (for a download: nothing is kept afterwards).

    `head=True`: the bytes of the head file an open_clip export writes beside the model (any `fmt`)."""
    with tempfile.TemporaryDirectory(prefix="wiseft-export-") as tmp:
        out = Path(tmp) / "model.safetensors"
        if head:
            return _save_head(runtime, runtime.space.state_at(alpha), out, _provenance(runtime, alpha)).read_bytes()
        return export_interpolated(runtime, alpha, out, fmt).read_bytes()
