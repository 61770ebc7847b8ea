"""timm's CLIP image towers (`vit_*_clip_*`) as fine-tuned checkpoints, in open_clip's layout.

timm holds CLIP's image tower under its own names (timm's `_convert_openai_clip` renames open_clip's; this is the
way back) and CLIP's projection as `head` (bias zero). A timm checkpoint whose head is still that projection maps
onto the zero-shot open_clip tower exactly, and WiSE-FT between them is one flat lerp.

A timm classifier head (e.g. `*_ft_in1k`, 1000 classes) is refused: it scores the un-normalised, un-projected
token with a bias, while θ₀'s zero-shot classifier scores normalised, projected features without one. No one set
of parameters computes both endpoints: folding the projection into θ₀'s head keeps its predictions but not its
logits, and leaves a free scale (any positive multiple gives the same θ₀, and a different curve between them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import open_clip
import torch

from ..experiment.spec import Experiment
from .checkpoints import CheckpointError
from .lineage import GELU, QUICK_GELU, check_activation
from .models import LoadedClip

_RENAMES = (("patch_embed.proj", "conv1"), ("norm_pre", "ln_pre"), ("blocks.", "transformer.resblocks."),
            ("attn.qkv.", "attn.in_proj_"), ("attn.proj", "attn.out_proj"), ("norm1", "ln_1"), ("norm2", "ln_2"),
            ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))
_BLOCK = re.compile(r"blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)$")
_TOP = {"patch_embed.proj.weight", "norm_pre.weight", "norm_pre.bias", "norm.weight", "norm.bias", "cls_token",
        "pos_embed", "head.weight", "head.bias"}


def is_timm_state(tensors: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has timm ViT's names (cls_token, blocks.*)."""
    return "cls_token" in tensors and any(k.startswith("blocks.") for k in tensors)


def timm_config(path: Path) -> dict[str, Any]:
    """The checkpoint folder's timm config.json ({"architecture", "pretrained_cfg": {"tag"}, ...}); without one, the
    folder's name read as timm's `architecture.tag` (how the Hub names timm's repositories)."""
    config = path.parent / "config.json"
    if config.is_file():
        return json.loads(config.read_text(encoding="utf-8"))
    arch, _, tag = path.parent.name.partition(".")
    return {"architecture": arch, "pretrained_cfg": {"tag": tag}}


def to_open_clip(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """timm's names -> open_clip's image tower (visual.*); `head` is left to the caller (see finetuned_open_clip)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in _TOP and not _BLOCK.match(key):
            raise CheckpointError(f"{name}: weight {key!r} is not part of a timm CLIP image tower (vit_*_clip_* with "
                                  "global_pool 'token'); this checkpoint cannot be mapped to open_clip's CLIP")
        if key.startswith("head."):
            continue
        if key == "cls_token":
            out["visual.class_embedding"] = value.reshape(-1)
        elif key == "pos_embed":
            out["visual.positional_embedding"] = value[0]
        elif key.startswith("norm."):
            out["visual.ln_post." + key.removeprefix("norm.")] = value
        else:
            for old, repl in _RENAMES:
                key = key.replace(old, repl)
            out["visual." + key] = value
    return out


def finetuned_open_clip(tensors: dict[str, torch.Tensor], path: Path, clip: LoadedClip,
                        exp: Experiment) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A timm CLIP tower as an open_clip image-tower state (the zero-shot head then scores it), after the checks
    that it is the zero-shot's architecture, activation and CLIP (from timm's pretrained tag)."""
    config = timm_config(path)
    arch = str(config.get("architecture", ""))
    act = config.get("model_args", {}).get("act_layer") or (QUICK_GELU if "quickgelu" in arch else GELU)
    check_activation(act, clip.model.visual, path.name, clip.name)
    state = to_open_clip(tensors, path.name)
    proj = clip.model.visual.proj  # (width, embed_dim)
    weight, bias = tensors.get("head.weight"), tensors.get("head.bias")
    notes = []
    if weight is None:
        state["visual.proj"] = proj.detach().cpu().clone()
        notes.append(f"{path.name} has no head (timm num_classes=0): the zero-shot model's projection is used")
    elif tuple(weight.shape) == tuple(proj.T.shape) and (bias is None or not bias.any()):
        state["visual.proj"] = weight.T.contiguous()
    else:
        raise CheckpointError(
            f"{path.name}: its {weight.shape[0]}-class timm head scores the un-normalised {weight.shape[1]}-wide "
            f"token (timm drops CLIP's projection) with a bias, while the zero-shot classifier scores normalised, "
            f"projected {proj.shape[1]}-wide features: no one set of parameters holds both, so WiSE-FT between them "
            "is no flat lerp. Use a timm CLIP whose head is CLIP's projection (num_classes = embed dim, as timm's "
            "untuned vit_*_clip_* tags), or fine-tune from the zero-shot model here (wiseft-explorer finetune)")
    note = check_tag_lineage(str(config.get("pretrained_cfg", {}).get("tag", "")), exp, path.name)
    return state, notes + ([note] if note else [])


def check_tag_lineage(tag: str, exp: Experiment, file: str) -> str | None:
    """Refuse a timm checkpoint whose pretrained tag names another CLIP than the experiment's zero-shot tag
    (`openai_ft_in1k` started from `openai`, `laion2b_*` from a `laion2b_*` tag); with allow_other_zeroshot, or
    when the zero-shot weights are no open_clip tag, a note says what was (not) checked."""
    family = tag.split("_ft_")[0] if tag else ""
    spec = exp.zeroshot
    zs_tag = spec.pretrained if spec.pretrained in open_clip.list_pretrained_tags_by_model(spec.name) else None
    if not family:
        return f"{file} names no timm pretrained tag: the CLIP it was fine-tuned from could not be checked"
    if zs_tag is None:
        return (f"{file} was fine-tuned from {family} CLIP weights (timm tag {tag}); the zero-shot weights are not "
                "an open_clip tag, so that they are the same could not be checked")
    if zs_tag == family or zs_tag.startswith(family + "_"):
        return None
    what = (f"{file} was fine-tuned from {family} CLIP weights (timm tag {tag}), but the experiment's zero-shot is "
            f"open_clip's '{zs_tag}'")
    if exp.allow_other_zeroshot:
        return f"{what}; used anyway because the experiment sets allow_other_zeroshot = true"
    raise CheckpointError(f"{what}: use the {family} tag as zeroshot.pretrained, or set allow_other_zeroshot = true "
                          "to interpolate between them anyway")
