"""What a checkpoint records about where it comes from, and the checks that refuse a mismatched pair:
the activation its transformer was trained with (QuickGELU for OpenAI's CLIP, GELU otherwise) and a digest of the
zero-shot image tower θ₀ a fine-tuned checkpoint was fine-tuned (or converted) from."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import torch
from torch import nn

from .checkpoints import CheckpointError

QUICK_GELU, GELU = "quick_gelu", "gelu"
DIGEST_CHARS = 16


def activation_of(model: nn.Module) -> str | None:
    """'quick_gelu' or 'gelu': the activation of a CLIP model's transformer blocks (None: it has neither)."""
    names = {type(m).__name__ for m in model.modules()}
    if "QuickGELU" in names:
        return QUICK_GELU
    return GELU if "GELU" in names else None


def visual_digest(visual: Mapping[str, torch.Tensor]) -> str:
    """A short digest of an image tower's weights (keys without 'visual.'), independent of the stored precision."""
    digest = hashlib.sha256()
    for key in sorted(visual):
        value = visual[key].detach().cpu()
        value = value.float() if value.is_floating_point() else value
        digest.update(f"{key}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()[:DIGEST_CHARS]


def classifier_visual(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The image tower of a classifier state dict (visual.* keys), with the prefix removed."""
    return {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}


def check_activation(recorded: str | None, model: nn.Module, file: str, model_name: str) -> None:
    """Refuse, in one line, a checkpoint whose recorded activation is not the one the experiment's model uses."""
    built = activation_of(model)
    if recorded is None or built is None or recorded == built:
        return
    fix = (f"use the -quickgelu variant of the model (e.g. model = \"{model_name}-quickgelu\")" if recorded == QUICK_GELU
           else f"use the model without -quickgelu (model = \"{model_name.removesuffix('-quickgelu')}\")")
    raise CheckpointError(f"{file} records activation {recorded}, but zeroshot.model '{model_name}' builds {built}: "
                          f"every weight would act differently; {fix}")


def check_zeroshot_digest(recorded: str | None, zeroshot_visual: Mapping[str, torch.Tensor], file: str,
                          zeroshot_source: str, allow_other: bool) -> str | None:
    """Refuse a fine-tuned checkpoint whose recorded θ₀ digest is not the loaded zero-shot's (one line naming both).

    With `allow_other` the pair is used anyway and a note saying so is returned.
    """
    if not recorded:
        return None
    loaded = visual_digest(zeroshot_visual)
    if loaded == recorded:
        return None
    what = (f"{file} was fine-tuned from zero-shot weights {recorded}, but the experiment's zero-shot "
            f"({zeroshot_source}) is {loaded}")
    if allow_other:
        return f"{what}; used anyway because the experiment sets allow_other_zeroshot = true"
    raise CheckpointError(f"{what}: use the zero-shot model it was fine-tuned from, or set allow_other_zeroshot = "
                          "true in the experiment to interpolate between them anyway")


def tag_quick_gelu(name: str, tag: str) -> bool:
    """Whether open_clip's pretrained tag was trained with QuickGELU (its `openai` tags are): passed on as
    `force_quick_gelu`, since open_clip itself only warns when the model name says otherwise."""
    from open_clip.pretrained import get_pretrained_cfg

    return bool(get_pretrained_cfg(name, tag).get("quick_gelu", False))
