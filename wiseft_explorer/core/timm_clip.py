"""timm's CLIP image towers (`vit_*_clip_*`) as fine-tuned checkpoints, in open_clip's layout.

timm holds CLIP's image tower under its own names (timm's `_convert_openai_clip` renames open_clip's; this is the
way back) and CLIP's projection as `head` (bias zero). A timm checkpoint whose head is still that projection maps
onto the zero-shot open_clip tower exactly, and WiSE-FT between them is one flat lerp.

A timm classifier head (`*_ft_in1k`, 1000 classes) scores the final-norm class token itself: no projection, no
normalisation, a bias. The pair then lives in that layout (`token_layout`): both towers without `proj`, features
not normalised, and θ₀'s zero-shot head moved onto the token as W₀·projᵀ / c, bias 0. The normalisation θ₀ divides
by is no linear map, so it is folded in as one constant c: the mean norm of θ₀'s projected features over the
first SCALE_IMAGES images of the ID set (its held-out split when it has one) in their fair order, no label read.
Then α=1 is timm's forward exactly, α=0 predicts exactly as the zero-shot classifier (its logits are the
zero-shot's times each image's feature norm / c, so the ranking is the same), and θ_α stays one flat lerp.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
from pathlib import Path
from typing import Any

import open_clip
import torch
from safetensors import SafetensorError, safe_open

from ..data.sets import load_batch, load_eval_set
from ..experiment.spec import DatasetSpec, Experiment
from ..store.cache import DiskCache
from ..store.keys import cache_key, set_fingerprint, software_versions, zeroshot_identity
from .checkpoints import CheckpointError, load_checkpoint
from .lineage import GELU, QUICK_GELU, activation_of, check_activation
from .models import ImageClassifier, LoadedClip

SCALE_IMAGES = 256

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


def finetuned_open_clip(tensors: dict[str, torch.Tensor], path: Path, clip: LoadedClip, exp: Experiment,
                        zeroshot: ImageClassifier) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A timm CLIP tower as an open_clip image-tower state, after the checks that it is the zero-shot's
    architecture, activation and CLIP (from timm's pretrained tag). A projection head becomes `visual.proj` (the
    zero-shot head then scores it); a classifier head is kept as `head.*`, for a zero-shot in `token_layout`."""
    config = timm_config(path)
    _check_timm_activation(config, clip, path.name)
    state = to_open_clip(tensors, path.name)
    proj = clip.model.visual.proj  # (width, embed_dim)
    weight, bias = tensors.get("head.weight"), tensors.get("head.bias")
    notes: list[str | None] = []
    if weight is None:
        state["visual.proj"] = proj.detach().cpu().clone()
        notes.append(f"{path.name} has no head (timm num_classes=0): the zero-shot model's projection is used")
    elif _is_projection(weight, bias, proj):
        state["visual.proj"] = weight.T.contiguous()
    elif weight.shape[1] != proj.shape[0] or zeroshot.normalize:
        raise CheckpointError(
            f"{path.name}: its {weight.shape[0]}-class timm head scores {weight.shape[1]}-wide tokens, but "
            + (f"the zero-shot tower's are {proj.shape[0]}-wide: use the timm CLIP of the zero-shot's architecture"
               if weight.shape[1] != proj.shape[0] else
               "the zero-shot classifier is in the projected, normalised layout: load the pair with load_models, "
               "which moves θ₀ to timm's layout first"))
    else:
        state["head.weight"] = weight
        state["head.bias"] = torch.zeros(weight.shape[0]) if bias is None else bias
        notes.append(f"{path.name}: timm's {weight.shape[0]}-class head scores the un-projected, un-normalised "
                     "class token, and so does θ₀'s zero-shot head in this pair (every α in that layout)")
    notes.append(preprocess_note(config, clip, exp, path.name))
    note = check_tag_lineage(str(config.get("pretrained_cfg", {}).get("tag", "")), exp, path.name)
    return state, [n for n in [*notes, note] if n]


def _is_projection(weight: torch.Tensor, bias: torch.Tensor | None, proj: torch.Tensor) -> bool:
    return tuple(weight.shape) == tuple(proj.T.shape) and (bias is None or not bias.any())


def _check_timm_activation(config: dict[str, Any], clip: LoadedClip, file: str) -> None:
    """timm runs `vit_*_clip_*` with GELU (its *_ft_in1k tags too) and `*_clip_quickgelu_*` with QuickGELU."""
    arch = str(config.get("architecture", ""))
    act = config.get("model_args", {}).get("act_layer") or (QUICK_GELU if "quickgelu" in arch else GELU)
    if act == GELU and activation_of(clip.model.visual) == QUICK_GELU:
        raise CheckpointError(
            f"{file}: timm runs {arch or 'this tower'} with GELU, but the zero-shot model runs QuickGELU (OpenAI's "
            "tags force it): every α runs one activation, so one endpoint would not be the model it names. To "
            "interpolate in timm's architecture, give the zero-shot OpenAI's weights as a file under the GELU model "
            "(model = \"ViT-B-32\", pretrained = \"path/to/open_clip_model.safetensors\"); θ₀ is then OpenAI's "
            "CLIP run with GELU, which is where timm's fine-tuning started, not OpenAI's published zero-shot")
    check_activation(act, clip.model.visual, file, clip.name)


def preprocess_note(config: dict[str, Any], clip: LoadedClip, exp: Experiment, file: str) -> str | None:
    """What timm's pretrained_cfg preprocesses differently from the experiment (which every α uses), with the
    [zeroshot.preprocess] values that follow timm's; None when they agree."""
    cfg = config.get("pretrained_cfg", {})
    ours = dict(getattr(clip.model.visual, "preprocess_cfg", None) or {})
    size = cfg.get("input_size", [0, 0, 0])[-1]
    want = {k: cfg[k] for k in ("mean", "std", "interpolation") if k in cfg}
    want.update({"size": size} if size else {})
    squash = cfg.get("crop_mode") == "squash"
    want.update({"resize_mode": "squash"} if squash else {"crop_pct": cfg.get("crop_pct", 1.0)})
    have: dict[str, Any] = {**{k: ours.get(k) for k in want}, "crop_pct": (exp.zeroshot.preprocess and
                                                                          exp.zeroshot.preprocess.crop_pct) or 1.0}
    ours_size = have.get("size")
    have["size"] = ours_size[0] if isinstance(ours_size, list | tuple) else ours_size
    differs = {k: v for k, v in want.items() if _rounded(have.get(k)) != _rounded(v)}
    if not differs:
        return None
    lines = ", ".join(f"{k} = {json.dumps(v)}" for k, v in differs.items())  # timm's values, unrounded
    unmatched = (f" (its {cfg['crop_pct']} crop of the squashed image has no equivalent here)"
                 if squash and cfg.get("crop_pct", 1.0) != 1.0 else "")
    return (f"{file}: timm evaluates it with other preprocessing than the experiment's, which every α uses "
            f"({clip.preprocess_note or 'the zero-shot model’s'}): α=1 is timm's model on these images, not on "
            f"timm's; to use timm's, give [zeroshot.preprocess] {lines}{unmatched}")


def crop_pct_transform(transform: Any, cfg: dict[str, Any], crop_pct: float) -> Any:
    """open_clip's eval transform (resize the shortest side to size, centre-crop size) with timm's crop instead:
    the shortest side resized to floor(size / crop_pct), then the centre size x size (timm's eval transform)."""
    from torchvision.transforms import Compose, InterpolationMode, Resize

    size = cfg["size"] if isinstance(cfg["size"], int) else cfg["size"][0]
    resize = Resize(math.floor(size / crop_pct), interpolation=InterpolationMode(cfg["interpolation"]))
    steps = list(transform.transforms)
    if not isinstance(steps[0], Resize) or steps[0].size != size:
        raise CheckpointError(f"crop_pct needs a square size and resize_mode 'shortest' (got {cfg['size']}, "
                              f"{cfg.get('resize_mode')}); remove crop_pct or give [zeroshot.preprocess] those")
    return Compose([resize, *steps[1:]])


def _rounded(value: Any) -> Any:
    return [round(float(v), 4) for v in value] if isinstance(value, list | tuple) else value


def timm_classifier_head(path: Path, clip: LoadedClip) -> bool:
    """Whether a checkpoint is a timm CLIP tower with a classifier head (not CLIP's projection); reads only the
    header of a safetensors file."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            names = set(fh.keys())
            if not is_timm_state(dict.fromkeys(names, torch.empty(0))) or "head.weight" not in names:
                return False
            weight = fh.get_tensor("head.weight")
            bias = fh.get_tensor("head.bias") if "head.bias" in names else None
    except (SafetensorError, OSError):  # not a safetensors file: read whole only in a timm folder (config.json)
        if not (path.parent / "config.json").is_file() or "architecture" not in timm_config(path):
            return False
        tensors, _ = load_checkpoint(path)
        if not is_timm_state(tensors) or "head.weight" not in tensors:
            return False
        weight, bias = tensors["head.weight"], tensors.get("head.bias")
    return not _is_projection(weight, bias, clip.model.visual.proj)


def token_layout(zeroshot: ImageClassifier, exp: Experiment, clip: LoadedClip,
                 cache: DiskCache | None = None) -> tuple[ImageClassifier, str]:
    """θ₀ in a timm classifier pair's layout: the tower without `proj`, features not normalised, and the zero-shot
    head W₀ (bias 0) as W₀·projᵀ / c, with c the mean norm of θ₀'s projected features (see the module's note),
    kept in `cache` by θ₀'s weights, the preprocessing and the set's content."""
    if zeroshot.head.bias is not None and zeroshot.head.bias.any():
        raise CheckpointError("the zero-shot head has a bias: moved onto the un-normalised token it would no longer "
                              "rank classes as the zero-shot classifier does; use a text-built zero-shot head")
    spec = exp.id_val or exp.id_set
    device = next(zeroshot.parameters()).device
    key = cache_key(kind="timm-feature-scale", weights=zeroshot_identity(exp.zeroshot), preprocess=clip.preprocess_note,
                    set=set_fingerprint(spec, exp.seed), seed=exp.seed, images=SCALE_IMAGES, device=device.type,
                    versions=software_versions())
    stored = cache.get(key) if cache is not None else None
    stored = stored if stored is not None and {"scale", "count"} <= stored.keys() else None
    scale, count = (float(stored["scale"]), int(stored["count"])) if stored else _mean_norm(zeroshot, exp, spec, clip)
    if stored is None and cache is not None:
        with contextlib.suppress(OSError):  # a full or read-only disk costs the next load a new measure, no more
            cache.put(key, {"scale": torch.tensor(scale, dtype=torch.float64), "count": torch.tensor(count)},
                      {"kind": "timm-feature-scale"})
    model = copy.deepcopy(zeroshot)
    proj = model.visual.proj.detach().float()
    model.visual.proj = None
    with torch.no_grad():
        weight = (zeroshot.head.weight.float() @ proj.T) / scale
        model.head = torch.nn.Linear(weight.shape[1], weight.shape[0]).to(device)
        model.head.weight.copy_(weight)
        model.head.bias.zero_()
    model.normalize = False
    note = (f"θ₀'s zero-shot head is moved onto that token as W₀·projᵀ / {scale:.4g}, the mean norm of θ₀'s projected "
            f"features over {count} images of {spec.name}: α=0 predicts as the zero-shot classifier, its logits "
            f"scaled per image by that norm / {scale:.4g}")
    return model.eval().requires_grad_(False), note


def _mean_norm(zeroshot: ImageClassifier, exp: Experiment, spec: DatasetSpec, clip: LoadedClip) -> tuple[float, int]:
    """The mean norm of θ₀'s projected features over the set's first SCALE_IMAGES images in fair order, and how many
    images that was (those that decode)."""
    ev = load_eval_set(spec, exp.classnames, exp.seed)
    picked = [int(i) for i in ev.order[:SCALE_IMAGES]]
    device = next(zeroshot.parameters()).device
    norms = []
    with torch.no_grad():
        for start in range(0, len(picked), exp.batch_size):
            images, _, _ = load_batch(ev, picked[start:start + exp.batch_size], clip.preprocess)
            if images is not None:
                norms.append(zeroshot.visual(images.to(device)).float().norm(dim=-1).cpu())
    if not norms:
        raise CheckpointError(f"{spec.name}: no image could be read to measure θ₀'s feature norm, which a timm "
                              "classifier pair needs; check the ID set's folder")
    values = torch.cat(norms).double()
    return float(values.mean()), len(values)


def check_tag_lineage(tag: str, exp: Experiment, file: str) -> str | None:
    """Refuse a timm checkpoint whose pretrained tag names another CLIP than the experiment's zero-shot tag
    (`openai_ft_in1k` started from `openai`, `laion2b_*` from a `laion2b_*` tag); with allow_other_zeroshot, or
    when the zero-shot weights are no open_clip tag, a note says what was (not) checked."""
    family = tag.split("_ft_")[0] if tag else ""
    spec = exp.zeroshot
    tags = open_clip.list_pretrained_tags_by_model(spec.name)
    zs_tag = spec.pretrained if spec.pretrained in tags else None
    if not family:
        return f"{file} names no timm pretrained tag: the CLIP it was fine-tuned from could not be checked"
    if zs_tag is None:
        return (f"{file} was fine-tuned from {family} CLIP weights (timm tag {tag}); the zero-shot weights are not "
                "an open_clip tag, so that they are the same could not be checked")
    if zs_tag == family:
        return None
    if zs_tag.startswith(family + "_"):  # timm names a dataset; open_clip may hold several runs on it (ViT-B-32)
        runs = [t for t in tags if t == family or t.startswith(family + "_")]
        return None if len(runs) == 1 else (
            f"{file} was fine-tuned from {family} CLIP weights (timm tag {tag}); open_clip holds {len(runs)} "
            f"{family} runs of {spec.name} ({', '.join(runs)}), and timm's tag does not say which: check that "
            f"'{zs_tag}' is the one (timm's model card names it)")
    what = (f"{file} was fine-tuned from {family} CLIP weights (timm tag {tag}), but the experiment's zero-shot is "
            f"open_clip's '{zs_tag}'")
    if exp.allow_other_zeroshot:
        return f"{what}; used anyway because the experiment sets allow_other_zeroshot = true"
    raise CheckpointError(f"{what}: use the {family} tag as zeroshot.pretrained, or set allow_other_zeroshot = true "
                          "to interpolate between them anyway")
