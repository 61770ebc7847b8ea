"""Hugging Face `transformers` CLIP folders (CLIPModel, CLIPVisionModelWithProjection) in open_clip's layout.

A folder's config.json, read with transformers' own config classes (their defaults fill what the file leaves out),
becomes an open_clip model config; its weights are renamed to open_clip's keys, q/k/v stacked into one in_proj and
the projections transposed. θ₀ and θ₁ are then the same open_clip parameters, and θ_α stays one flat lerp."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import open_clip
import torch
from open_clip.model import CLIPTextCfg, CLIPVisionCfg

from .checkpoints import CheckpointError, load_checkpoint
from .lineage import GELU, QUICK_GELU, check_activation
from .models import LoadedClip, ModelLoadError

INSTALL_HINT = "pip install .[transformers]"
_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_SHARDS = "model.safetensors.index.json"
_CLIP_EOT = 49407  # the end-of-text id of CLIP's BPE tokenizer (open_clip's), the largest id of its 49408
_RENAMES = (
    ("embeddings.class_embedding", "class_embedding"), ("embeddings.patch_embedding", "conv1"),
    ("embeddings.position_embedding.weight", "positional_embedding"), ("embeddings.token_embedding", "token_embedding"),
    ("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post"), ("final_layer_norm", "ln_final"),
    ("encoder.layers.", "transformer.resblocks."), ("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
    ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"),
)
_TOWERS = {"vision_model.": "visual.", "text_model.": ""}
_PROJECTIONS = {"visual_projection.weight": "visual.proj", "text_projection.weight": "text_projection"}
_QKV = re.compile(r"(.*)\.self_attn\.([qkv])_proj\.(weight|bias)$")


def require_transformers() -> ModuleType:
    """The `transformers` package, or a ModelLoadError that says how to install the optional extra."""
    try:
        import transformers
    except ImportError as err:
        raise ModelLoadError("reading a Hugging Face transformers CLIP folder needs the optional `transformers` "
                             f"package, which is not installed: {INSTALL_HINT} (or pip install transformers)") from err
    return transformers


def is_transformers_state(tensors: dict[str, torch.Tensor]) -> bool:
    """Whether a state dict has transformers CLIP's names (vision_model.*)."""
    return any(k.startswith("vision_model.") for k in tensors)


@dataclass(frozen=True)
class HfClip:
    """A transformers CLIP folder's configuration: its towers' configs (text: None for a vision-only model)."""

    folder: Path
    vision: Any
    text: Any | None
    projection_dim: int

    @property
    def activation(self) -> str:
        """open_clip's name of the towers' activation (one for both, as open_clip builds them)."""
        acts = {c.hidden_act for c in (self.vision, self.text) if c is not None}
        if len(acts) != 1 or not acts <= {QUICK_GELU, GELU}:
            raise ModelLoadError(f"{self.folder}: hidden_act {sorted(acts)}; open_clip builds one activation for "
                                 "both towers, quick_gelu or gelu: this folder cannot be mapped to open_clip")
        return acts.pop()

    def open_clip_config(self) -> dict[str, Any]:
        """open_clip's model config of the same network (a CLIPModel folder: both towers)."""
        if self.text is None:
            raise ModelLoadError(f"{self.folder}: a vision-only model (CLIPVisionModelWithProjection) has no text "
                                 "tower to build the zero-shot head from; use it as the fine-tuned checkpoint "
                                 "(checkpoint = \"transformers:...\") and a CLIPModel folder as the zero-shot model")
        v, t = self.vision, self.text
        if t.vocab_size != _CLIP_EOT + 1 or t.eos_token_id not in (2, _CLIP_EOT):
            raise ModelLoadError(f"{self.folder}: vocab_size {t.vocab_size}, eos_token_id {t.eos_token_id}: prompts "
                                 "are tokenized with CLIP's BPE (49408 ids, end of text 49407), which this text tower "
                                 "was not trained with")
        for cfg in (v, t):
            if cfg.layer_norm_eps != 1e-5 or cfg.hidden_size % cfg.num_attention_heads:
                raise ModelLoadError(f"{self.folder}: layer_norm_eps {cfg.layer_norm_eps} with {cfg.hidden_size} "
                                     f"wide, {cfg.num_attention_heads}-head layers: open_clip's CLIP builds 1e-05 "
                                     "and heads that divide the width")
        return {"embed_dim": self.projection_dim, "quick_gelu": self.activation == QUICK_GELU,
                "vision_cfg": {"image_size": v.image_size, "patch_size": v.patch_size, "width": v.hidden_size,
                               "layers": v.num_hidden_layers, "head_width": v.hidden_size // v.num_attention_heads,
                               "mlp_ratio": v.intermediate_size / v.hidden_size},
                "text_cfg": {"context_length": t.max_position_embeddings, "vocab_size": t.vocab_size,
                             "width": t.hidden_size, "heads": t.num_attention_heads, "layers": t.num_hidden_layers,
                             "mlp_ratio": t.intermediate_size / t.hidden_size}}

    def preprocess_cfg(self) -> dict[str, Any]:
        """open_clip's preprocessing config from preprocessor_config.json ({} without one: open_clip's defaults)."""
        path = self.folder / "preprocessor_config.json"
        if not path.is_file():
            return {}
        raw = json.loads(path.read_text(encoding="utf-8"))
        crop = _pixels(raw.get("crop_size", self.vision.image_size))
        size = _pixels(raw.get("size", crop))
        if size != crop and raw.get("do_center_crop", True):
            raise ModelLoadError(f"{path}: resizes to {size} px, then crops {crop} px; open_clip's eval transform "
                                 "resizes to the crop size: set [zeroshot.preprocess] to the values you want")
        interpolation = {2: "bilinear", 3: "bicubic"}.get(raw.get("resample", 3))
        if interpolation is None:
            raise ModelLoadError(f"{path}: resample {raw['resample']} is neither bilinear (2) nor bicubic (3)")
        return {"size": crop, "mean": tuple(raw["image_mean"]), "std": tuple(raw["image_std"]),
                "interpolation": interpolation, "resize_mode": "shortest"}

    def open_clip_state(self) -> dict[str, torch.Tensor]:
        """The folder's weights under open_clip's names."""
        return to_open_clip(read_weights(self.folder), self.folder.name)


def _pixels(value: Any) -> int:
    """A size of transformers' image processors: an int, or {"shortest_edge"} / {"height", "width"}."""
    if isinstance(value, dict):
        return int(value.get("shortest_edge") or value["height"])
    return int(value)


def read_folder(folder: Path) -> HfClip:
    """A transformers CLIP folder's configuration (transformers needed), or the error that says what is wrong."""
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder}: no config.json; a transformers CLIP folder holds config.json and "
                             "model.safetensors (save_pretrained writes both)")
    transformers = require_transformers()
    raw = json.loads(path.read_text(encoding="utf-8"))
    kind = raw.get("model_type")
    if kind == "clip":
        cfg = transformers.CLIPConfig.from_dict(raw)
        return HfClip(folder, cfg.vision_config, cfg.text_config, cfg.projection_dim)
    if kind == "clip_vision_model":
        cfg = transformers.CLIPVisionConfig.from_dict(raw)
        return HfClip(folder, cfg, None, cfg.projection_dim)
    raise ModelLoadError(f"{path}: model_type {kind!r} is not a transformers CLIP ('clip' or 'clip_vision_model')")


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The folder's weights, read safely: model.safetensors (or its shards), else pytorch_model.bin (weights only)."""
    if (folder / _SHARDS).is_file():
        index = json.loads((folder / _SHARDS).read_text(encoding="utf-8"))
        return {k: v for shard in sorted(set(index["weight_map"].values()))
                for k, v in load_checkpoint(folder / shard)[0].items()}
    found = next((folder / n for n in _WEIGHTS if (folder / n).is_file()), None)
    if found is None:
        raise ModelLoadError(f"{folder}: no weights file (expected one of {', '.join(_WEIGHTS)}, or {_SHARDS})")
    return load_checkpoint(found)[0]


def to_open_clip(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """transformers CLIP names -> open_clip's: towers renamed, q/k/v stacked (in_proj), projections transposed."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):  # a buffer of positions 0..n-1 that older versions saved
            continue
        if key == "logit_scale" or key in _PROJECTIONS:
            out[_PROJECTIONS.get(key, key)] = value if key == "logit_scale" else value.T.contiguous()
            continue
        tower = next((t for t in _TOWERS if key.startswith(t)), None)
        if tower is None:
            raise CheckpointError(f"{name}: weight {key!r} is not part of a transformers CLIPModel or "
                                  "CLIPVisionModelWithProjection; save the CLIP itself (save_pretrained), not a "
                                  "model built around it")
        new = key.removeprefix(tower)
        for old, repl in _RENAMES:
            new = new.replace(old, repl)
        new = _TOWERS[tower] + new
        if match := _QKV.match(new):
            qkv.setdefault((match[1], match[3]), {})[match[2]] = value
        else:
            out[new] = value
    for (block, kind), parts in qkv.items():
        out[f"{block}.attn.in_proj_{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def check_heads(hf: HfClip, visual: torch.nn.Module, name: str) -> None:
    """Refuse a fine-tuned tower whose attention heads differ from the zero-shot's (the weights cannot show it)."""
    heads = {m.num_heads for m in visual.modules() if isinstance(m, torch.nn.MultiheadAttention)}
    if heads and heads != {hf.vision.num_attention_heads}:
        raise CheckpointError(f"{name}: its image tower has {hf.vision.num_attention_heads} attention heads, the "
                              f"zero-shot model's {sorted(heads)}: every attention would be split differently; "
                              "use the zero-shot model it was fine-tuned from")


def check_named(config: dict[str, Any], name: str, folder: Path) -> None:
    """Refuse zeroshot.model naming an open_clip architecture other than the folder's (any other name is a label)."""
    known = open_clip.get_model_config(name)
    if known is None:
        return
    differ = [f"quick_gelu {known.get('quick_gelu', False)} vs {config['quick_gelu']}"] \
        if known.get("quick_gelu", False) != config["quick_gelu"] else []
    differ += [f"embed_dim {known['embed_dim']} vs {config['embed_dim']}"] * (known["embed_dim"] != config["embed_dim"])
    for part, kind in (("vision_cfg", CLIPVisionCfg), ("text_cfg", CLIPTextCfg)):
        theirs = {**vars(kind()), **known[part]}
        differ += [f"{part}.{k} {theirs.get(k)} vs {v}" for k, v in config[part].items() if theirs.get(k) != v]
    if differ:
        raise ModelLoadError(f"zeroshot.model '{name}' is not the architecture of {folder} ({'; '.join(differ[:3])}, "
                             "open_clip's vs the folder's): name the matching open_clip model, or any other name to "
                             "use the folder's architecture as it is")


def finetuned_open_clip(tensors: dict[str, torch.Tensor], path: Path, clip: LoadedClip) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A transformers CLIP checkpoint (the config.json beside it says how it computes) under open_clip's names,
    after the checks that it acts like the zero-shot model; a vision-only model without a projection takes the
    zero-shot's (it cannot have changed it)."""
    hf = read_folder(path.parent)
    visual = clip.model.visual
    check_activation(hf.activation, visual, path.name, clip.name)
    check_heads(hf, visual, path.name)
    state = to_open_clip(tensors, path.name)
    if "visual.proj" in state or getattr(visual, "proj", None) is None:
        return state, []
    state["visual.proj"] = visual.proj.detach().cpu().clone()
    return state, [f"{path.name} has no visual_projection (a CLIPVisionModel): the zero-shot model's is used"]
