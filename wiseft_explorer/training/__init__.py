"""Fine-tuning a zero-shot CLIP (end-to-end, linear classifier or LP-FT), alone or under torchrun.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "finetuning": (
        "FinetuneResult", "finetune", "finetune_end_to_end", "finetune_linear", "image_features", "save_finetuned"
    ),
    "lpft": ("finetune_lp_ft", "probe_recipe"),
    "augment": ("AugmentedImages", "train_transform", "training_images"),
    "loader": ("LoaderOptions",),
    "recipe": ("FinetuneConfig", "cosine_lr"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
