"""The WiSE-FT paper's checkpoints, made the paper's way: `pickle.dump` of whole modules (src/models/utils.py:
torch_save) whose classes (tests/paper_code: src.models.modeling, clip.model) are importable only while the file
is written, as on the machine that ran the paper's code, and absent when it is converted."""

from __future__ import annotations

import contextlib
import copy
import pickle
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

PAPER_CODE = Path(__file__).resolve().parent / "paper_code"
PAPER_PACKAGES = ("src", "clip")


@contextlib.contextmanager
def paper_code() -> Iterator[dict[str, ModuleType]]:
    """Import the paper-code stand-ins for as long as the block runs; afterwards they are not importable."""
    sys.path.insert(0, str(PAPER_CODE))
    try:
        import clip.clip
        import clip.model
        import src.models.modeling

        yield {"model": clip.model, "clip": clip.clip, "modeling": src.models.modeling}
    finally:
        sys.path.remove(str(PAPER_CODE))
        for name in [n for n in sys.modules if n.split(".")[0] in PAPER_PACKAGES]:
            del sys.modules[name]


def preprocessing(code: dict[str, ModuleType]):
    """A CLIP-style torchvision pipeline holding clip.clip._convert_image_to_rgb, as the paper's modules carry."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32),
                      code["clip"]._convert_image_to_rgb, T.ToTensor(),
                      T.Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))])


def torch_save(module: nn.Module, path: Path) -> Path:
    """The paper's src/models/utils.py: torch_save: a plain pickle.dump of the whole module."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(module.cpu(), fh)
    return path


def zero_shot_weights(clip_model: nn.Module, tokenizer, classnames: Sequence[str], templates: Sequence[str]):
    """The paper's zero-shot head (src/models/zeroshot.py), from its definition: per class, every prompt's text
    embedding L2-normalised, averaged, re-normalised; all of it times logit_scale.exp(); (C, D)."""
    rows = []
    with torch.no_grad():
        for name in classnames:
            emb = clip_model.encode_text(tokenizer([t.format(name) for t in templates]))
            emb = emb / emb.norm(dim=-1, keepdim=True)
            mean = emb.mean(dim=0)
            rows.append(mean / mean.norm())
        return torch.stack(rows) * clip_model.logit_scale.exp()


def _as_paper_classes(module: nn.Module, code: dict[str, ModuleType]) -> nn.Module:
    """Relabel every non-torch class in `module` as a class of clip.model, so it pickles as the paper's would."""
    model = code["model"]
    for sub in module.modules():
        cls = type(sub)
        if cls.__module__.startswith("torch.") or cls.__module__ == model.__name__:
            continue
        twin = getattr(model, cls.__name__, None)
        if twin is None or not getattr(twin, "_relabelled", False):
            twin = type(cls.__name__, (nn.Module,), {"__module__": model.__name__, "_relabelled": True})
            setattr(model, cls.__name__, twin)
        sub.__class__ = twin
    return module


def paper_checkpoint(clip_model: nn.Module, classifier: nn.Module, path: Path, save=None) -> Path:
    """A paper ImageClassifier, pickle.dump'ed, holding any open_clip model's image tower and `classifier`'s head.

    The open_clip classes are relabelled as clip.model's (the paper's CLIP defines the same towers). `save(module,
    path)` replaces the paper's torch_save (e.g. torch.save)."""
    with paper_code() as code:
        model = copy.deepcopy(clip_model).cpu()
        model.visual.load_state_dict(classifier.visual.state_dict())
        model = _as_paper_classes(model, code)
        modeling = code["modeling"]
        encoder = modeling.ImageEncoder(model, preprocessing(code), preprocessing(code))
        head = modeling.ClassificationHead(True, classifier.head.weight.detach(), classifier.head.bias.detach())
        (save or torch_save)(modeling.ImageClassifier(encoder, head), path)
        return path
