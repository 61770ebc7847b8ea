"""Fine-tuning a zero-shot CLIP (end-to-end, linear classifier, LP-FT or FLYP), alone or under torchrun.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "finetuning": (
        "FinetuneResult", "finetune", "finetune_end_to_end", "finetune_linear", "image_features", "save_finetuned"
    ),
    "flyp": ("FlypResult", "clip_loss", "finetune_flyp", "save_flyp"),
    "lpft": ("finetune_lp_ft", "probe_recipe"),
    "augment": ("AugmentedImages", "train_transform", "training_images"),
    "loader": ("LoaderOptions",),
    "recipe": ("FLYP_DEFAULTS", "FinetuneConfig", "cosine_lr", "mode_defaults"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
