"""The built-in demo: pretrain a small CLIP on the world, fine-tune it, and write the shipped assets.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "build": ("DEMO_MODEL_CONFIG", "DemoConfig", "build_demo"),
    "example": ("CLASSES", "COLOURS", "TEMPLATES", "TINY_CONFIG", "TINY_NAME", "next_commands", "picture",
                "write_config", "write_example", "write_folder"),
    "family": ("FamilyConfig", "MemberRecipe", "family_stage", "train_family"),
    "pretrain": ("vocabulary_token_ids",),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
