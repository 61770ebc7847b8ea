"""Named class lists and prompt sets: ImageNet's from open_clip, CIFAR-10's, and the transfer datasets' as CLIP
published them (clip_prompts.json), so nobody retypes 1,000 names."""

from __future__ import annotations

import json
import pkgutil
from collections.abc import Sequence
from functools import lru_cache

from .wilds_labels import FMOW_CLASSES, FMOW_TEMPLATES, IWILDCAM_CLASSES, IWILDCAM_TEMPLATES

# The transfer datasets whose class names and prompts are CLIP's, kept as data in clip_prompts.json (its "source").
CLIP_LISTS = ("cifar100", "stanford-cars", "dtd", "sun397", "food101")
CLASS_LISTS = ("imagenet", "cifar10", "iwildcam", "fmow", *CLIP_LISTS)
TEMPLATE_SETS = ("openai", "paper-simple", "simple", "cifar10", "iwildcam", "fmow", *CLIP_LISTS)
# Where each prompt set comes from. The paper's code ships only `openai_imagenet_template` and `simple_template`
# (besides two WILDS sets): the paper-reproduction examples use those.
TEMPLATE_SOURCES = {
    "openai": "the paper's openai_imagenet_template: the 80 ImageNet prompts of OpenAI's CLIP (open_clip ships the "
              "same list)",
    "paper-simple": "the paper's simple_template: the one prompt 'a photo of a {}.'",
    "simple": "open_clip's SIMPLE_IMAGENET_TEMPLATES: 7 ImageNet prompts (not in the paper's code)",
    "cifar10": "the 18 CIFAR-10 prompts of OpenAI's CLIP repository (data/prompts.md); not in the paper's code, so "
               "no paper checkpoint's head was built from them",
    "iwildcam": "the paper's iwildcam_template: its 2 prompts",
    "fmow": "the paper's fmow_template less its 2 prompts that choose 'a' or 'an' per class: 14 prompts",
    **{key: f"the prompts of OpenAI's CLIP repository for {key} (data/prompts.md, kept in clip_prompts.json); not in "
            "the paper's code" for key in CLIP_LISTS},
}
_PAPER_SIMPLE = ("a photo of a {}.",)

# CIFAR-10's classes in its label order (the binary release's batches.meta.txt, CIFAR-10.1 and CIFAR-10.2 agree).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# The 18 prompts OpenAI's CLIP repository lists for CIFAR-10 (data/prompts.md), kept as data.
_CIFAR10_TEMPLATES = tuple(
    f"a {quality}photo of {article} {size}{{}}."
    for article in ("a", "the")
    for quality, size in [("", ""), ("blurry ", ""), ("black and white ", ""), ("low contrast ", ""),
                          ("high contrast ", ""), ("bad ", ""), ("good ", ""), ("", "small "), ("", "big ")]
)


_WILDS = {"iwildcam": (IWILDCAM_CLASSES, IWILDCAM_TEMPLATES), "fmow": (FMOW_CLASSES, FMOW_TEMPLATES)}
@lru_cache(maxsize=1)
def clip_prompts() -> dict:
    """CLIP's published class names and prompts of the transfer datasets: {"source": ..., "datasets": {key: {
    "section", "classes", "templates"}}}, each class list in its dataset's label order."""
    data = pkgutil.get_data(__package__, "clip_prompts.json")
    if data is None:  # a loader without get_data (a missing file raises instead)
        raise FileNotFoundError("cannot read wiseft_explorer/experiment/clip_prompts.json: the loader gives no data")
    return json.loads(data)


def class_list(name: str) -> tuple[str, ...]:
    """The class names of a named list: 'imagenet' (open_clip's 1,000, standard index order), 'cifar10', or a
    transfer dataset's (CLIP_LISTS: CLIP's names, in the order of the dataset's own reader)."""
    if name == "imagenet":
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return tuple(IMAGENET_CLASSNAMES)
    if name == "cifar10":
        return CIFAR10_CLASSES
    if name in _WILDS:
        return _WILDS[name][0]
    if name in CLIP_LISTS:
        return tuple(clip_prompts()["datasets"][name]["classes"])
    raise KeyError(f"unknown class list {name!r} (known: {', '.join(CLASS_LISTS)})")


def template_list(name: str) -> tuple[str, ...]:
    """A named prompt set as '{}' format strings (TEMPLATE_SOURCES says where each comes from)."""
    if name == "cifar10":
        return _CIFAR10_TEMPLATES
    if name == "paper-simple":
        return _PAPER_SIMPLE
    if name in _WILDS:
        return _WILDS[name][1]
    if name in CLIP_LISTS:
        return tuple(clip_prompts()["datasets"][name]["templates"])
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

    if name not in ("openai", "simple"):
        raise KeyError(f"unknown template set {name!r} (known: {', '.join(TEMPLATE_SETS)})")
    chosen = OPENAI_IMAGENET_TEMPLATES if name == "openai" else SIMPLE_IMAGENET_TEMPLATES
    return tuple(t("{}") for t in chosen)


def list_name(values: Sequence[str], kind: str) -> str | None:
    """The name of the built-in list equal to `values` ('classes' or 'templates'), or None."""
    names, lookup = (CLASS_LISTS, class_list) if kind == "classes" else (TEMPLATE_SETS, template_list)
    return next((name for name in names if tuple(values) == lookup(name)), None)
