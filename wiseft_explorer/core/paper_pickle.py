"""Reading a trusted pickled checkpoint without the code that wrote it: the WiSE-FT paper's `pickle.dump` of whole
modules (`src/models/utils.py: torch_save`), a `torch.save` file, or a bare state dict.

The paper's classes (`src.models.modeling.*`, `clip.model.*`) are never imported: each becomes a stand-in module
that only keeps its parameters and buffers. Only the globals needed to rebuild tensors and torch modules are
allowed; preprocessing objects (torchvision, PIL, numpy) become inert stand-ins; anything else is refused."""

from __future__ import annotations

import io
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoints import (
    CLASSIFIER_FORMAT,
    OPEN_CLIP_FORMAT,
    as_state_dict,
    check_checkpoint_file,
    check_finite,
    load_checkpoint,
    paper_state_to_classifier,
    save_checkpoint,
)
from .lineage import QUICK_GELU, classifier_visual, visual_digest

# The paper's code: its classes become parameter-keeping stand-ins (never imported).
PAPER_PACKAGES = ("src", "clip")
# Preprocessing and other attributes the paper's modules carry: not needed for weights, never called.
INERT_PACKAGES = ("torchvision", "PIL", "numpy")
_TORCH_FUNCTIONS = {
    ("torch._utils", "_rebuild_tensor"), ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
    ("torch._tensor", "_rebuild_from_type_v2"),
}
_PLAIN = {("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"), ("__builtin__", "set"),
          ("builtins", "object"), ("copyreg", "_reconstructor"), ("_codecs", "encode")}
_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first object of a legacy (non-zip) torch.save file


class PickleReadError(ValueError):
    """A trusted pickle that still cannot be read as weights, with the file and the fix."""


class PaperStandIn(nn.Module):
    """Stands in for a class of the paper's code: keeps the parameters, buffers and submodules it is given."""

    def __new__(cls, *args: Any, **kwargs: Any) -> PaperStandIn:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()


class _Inert:
    """Stands in for a preprocessing object (or any global of INERT_PACKAGES): accepts anything, does nothing."""

    def __new__(cls, *args: Any, **kwargs: Any) -> _Inert:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


_STAND_INS: dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _STAND_INS:
        _STAND_INS[key] = type(name, (PaperStandIn,), {"__module__": f"paper-stand-in:{module}"})
    return _STAND_INS[key]


def _storage_from_bytes(data: bytes) -> Any:
    """A storage pickled by `pickle.dump` (torch's storage __reduce__): a small torch.save file, read weights-only."""
    return torch.load(io.BytesIO(data), weights_only=True)


def _allowed_torch(module: str, name: str) -> Any | None:
    if (module, name) == ("torch.storage", "_load_from_bytes"):
        return _storage_from_bytes
    if (module, name) in _TORCH_FUNCTIONS:
        return getattr(__import__(module, fromlist=[name]), name)
    if module == "torch" and (name.endswith("Storage") or name in ("Size", "device", "Tensor")
                              or isinstance(getattr(torch, name, None), torch.dtype)):
        return getattr(torch, name)
    if module in ("torch.storage", "torch.nn.parameter") and name in ("UntypedStorage", "TypedStorage", "Parameter"):
        return getattr(__import__(module, fromlist=[name]), name)
    if module.startswith("torch.nn.modules."):
        found = getattr(__import__(module, fromlist=[name]), name, None)
        if isinstance(found, type) and issubclass(found, nn.Module):
            return found
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds tensors and modules only; see the module's docstring."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in PAPER_PACKAGES:
            return _stand_in(module, name)
        if module.split(".")[0] in INERT_PACKAGES:
            return _Inert
        if (module, name) in _PLAIN:
            return super().find_class(module, name)
        if module.split(".")[0] == "torch":
            found = _allowed_torch(module, name)
            if found is not None:
                return found
        raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is neither a tensor, a torch module "
                                     "nor a class of the WiSE-FT paper's code")


def _load(file: Any, **kwargs: Any) -> Any:
    return RestrictedUnpickler(file, **kwargs).load()


# torch.load's pickle_module: it subclasses .Unpickler (zip files) and calls .load (legacy files).
_PICKLE_MODULE = types.SimpleNamespace(Unpickler=RestrictedUnpickler, load=_load, __name__="restricted_pickle")


def read_trusted_pickle(path: Path) -> Any:
    """The object in a trusted pickled file (paper modules as stand-ins); PickleReadError names file and fix."""
    try:
        if zipfile.is_zipfile(path):
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULE)
        with open(path, "rb") as fh:
            first = RestrictedUnpickler(fh).load()
        if isinstance(first, int) and first == _TORCH_MAGIC:
            return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_PICKLE_MODULE)
        return first
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError,
            RuntimeError) as err:
        detail = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise PickleReadError(
            f"{path.name}: could not read it as a checkpoint ({detail}); convert reads the WiSE-FT paper's "
            "checkpoints (pickle.dump or torch.save of its ImageClassifier), torch.save files and state dicts: "
            "re-save other files as a state dict (torch.save(model.state_dict(), 'file.pt'))") from err


def convert_trusted_pickle(src: str | Path, dst: str | Path, zeroshot: str | Path | None = None) -> Path:
    """Convert a pickled checkpoint the user trusts into safetensors (this DOES unpickle: trusted files only).

    The paper's classifiers are read without the paper's code (paper_pickle) and recorded as OpenAI CLIP
    (QuickGELU). `zeroshot`: the converted θ₀ this checkpoint was fine-tuned from, whose digest it then records.
    """
    src, dst = check_checkpoint_file(src), Path(dst)
    obj = read_trusted_pickle(src)  # explicit user opt-in (--trust-pickle); restricted to tensors and modules
    state = obj.state_dict() if isinstance(obj, nn.Module) else as_state_dict(obj, src.name)
    metadata: dict[str, Any] = {"converted_from": src.name}
    if any(k.startswith("image_encoder.model.visual.") for k in state):
        state = paper_state_to_classifier(state)
        # The paper's code is OpenAI's CLIP (clip/model.py), whose blocks always use QuickGELU.
        metadata.update({"format": CLASSIFIER_FORMAT, "activation": QUICK_GELU, "source": "WiSE-FT paper code"})
    else:
        metadata["format"] = OPEN_CLIP_FORMAT
    check_finite(state, src.name)
    if zeroshot is not None:
        zs_tensors, _ = load_checkpoint(zeroshot)
        metadata["zeroshot_digest"] = visual_digest(classifier_visual(zs_tensors))
        metadata["zeroshot_file"] = Path(zeroshot).name
    return save_checkpoint(dst, state, metadata)
