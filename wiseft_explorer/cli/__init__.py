"""The command line: `python -m wiseft_explorer` / `wiseft-explorer`.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "commands": ("build_parser", "main"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
