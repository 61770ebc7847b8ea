"""Export theta_alpha: our classifier checkpoint, or a full open_clip state dict that open_clip loads as is."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..core.checkpoints import OPEN_CLIP_FORMAT, save_checkpoint
from ..core.models import classifier_metadata
from .runtime import ExperimentRuntime

EXPORT_FORMATS = ("classifier", "open_clip")


def export_interpolated(runtime: ExperimentRuntime, alpha: float, out: str | Path, fmt: str = "classifier") -> Path:
    """Write the interpolated model at alpha to a .safetensors file (atomically)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out.name}: exports are .safetensors files; name the output *.safetensors")
    exp, pair = runtime.experiment, runtime.models
    assert exp.finetuned is not None  # load_models refuses an experiment without a fine-tuned checkpoint
    state = runtime.space.state_at(alpha)
    provenance = {"alpha": alpha, "head_policy": exp.head_policy, "zeroshot": exp.zeroshot.pretrained,
                  "finetuned": str(exp.finetuned.name), "experiment": exp.name}
    if fmt == "classifier":
        meta = classifier_metadata(pair.clip, exp.classnames, recipe={"wiseft": provenance})
        return save_checkpoint(out, state, meta)
    # Full open_clip model: interpolated image tower, the zero-shot text tower (what WiSE-FT leaves untouched).
    full = {k: v.detach().cpu() for k, v in pair.clip.model.state_dict().items()}
    full.update({k: v for k, v in state.items() if k.startswith("visual.")})
    # No compact rows here: open_clip's own loader must read this file as a plain state dict.
    return save_checkpoint(out, full, {"format": OPEN_CLIP_FORMAT, "model": pair.clip.name, **provenance},
                           compact=False)


def export_bytes(runtime: ExperimentRuntime, alpha: float, fmt: str = "classifier") -> bytes:
    """The interpolated model at alpha as .safetensors bytes (for a download: nothing is kept afterwards)."""
    with tempfile.TemporaryDirectory(prefix="wiseft-export-") as tmp:
        return export_interpolated(runtime, alpha, Path(tmp) / "model.safetensors", fmt).read_bytes()
