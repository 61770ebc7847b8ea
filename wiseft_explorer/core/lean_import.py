"""open_clip imported without transformers, for a server's cold start, and made whole again when a model needs it.

open_clip imports transformers as it loads (0.6-0.9 s here, where that optional package is installed) for the text
towers of a few models (its RoBERTa, XLM-RoBERTa, mT5 and NLLB CLIPs) and CoCa's captions. A cold start
waits for open_clip's import before its first curves, and no model the explorer's demo or presets name needs them.
`import_open_clip` imports it with transformers hidden; open_clip then records the package as missing, as it does
where it is not installed. `prepare_text_tower` gives it back to open_clip before a model that may need it is built.
The Hugging Face CLIP folders (core/hf_clip.py) import transformers themselves and need neither.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

HIDDEN = "transformers"
TOWERS = "open_clip.hf_model"  # the module of open_clip's Hugging Face text towers; its `transformers` None: missing


def import_open_clip() -> ModuleType:
    """open_clip, imported without transformers unless either is imported already."""
    if "open_clip" not in sys.modules and HIDDEN not in sys.modules:
        sys.modules[HIDDEN] = None  # type: ignore[assignment]  # None there: `import transformers` raises ImportError
        try:
            importlib.import_module("open_clip")
        finally:
            if HIDDEN in sys.modules and sys.modules[HIDDEN] is None:
                del sys.modules[HIDDEN]
    return importlib.import_module("open_clip")


def restore_text_towers() -> bool:
    """Run open_clip's text-tower module again if it found transformers missing and it is installed; whether it
    did. A reload runs the module in its own namespace, so the classes other modules imported from it see the
    package too. (CoCa's caption generation, which the explorer never calls, stays as it was.)"""
    module = sys.modules.get(TOWERS)
    if module is None or module.transformers is not None or importlib.util.find_spec(HIDDEN) is None:
        return False
    importlib.reload(module)
    return True


def prepare_text_tower(name: str, config: dict | None) -> None:
    """Restore the text towers before building open_clip model `name` (its registered `config`, if any) when it may
    need one: a config whose text tower is a Hugging Face model, or one only read as the model is built (hf-hub:,
    local-dir:)."""
    if name.startswith(("hf-hub:", "local-dir:")) or config is None \
            or "hf_model_name" in (config.get("text_cfg") or {}):
        restore_text_towers()
