"""Images in: safe decoding, image folders, dataset presets' readers, eval sets and the streaming loaders.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "cifar": ("convert_cifar102",),
    "folders": ("ImageFolderError", "scan_image_folder"),
    "imagenet_sets": ("imagenet_wnids", "subset_wnids"),
    "images": (
        "DEFAULT_MAX_BYTES", "DEFAULT_MAX_PIXELS", "ImageDecodeError", "SUPPORTED_FORMATS", "UPLOAD_TYPES",
        "decode_image", "decode_many", "probe_image"
    ),
    "preset_sets": ("DataWarning",),
    "sampling": ("fair_order", "fair_sample", "shard_plan"),
    "sets": (
        "EvalSet", "load_batch", "load_eval_set", "preprocess_images", "preprocess_set",
        "project_logits", "restrict_logits", "set_logits"
    ),
    "stream": (
        "DecodeCounter", "LabelledImages", "SweepImages", "batch_plan", "collate_loaded", "default_workers",
        "make_loader", "plan_items", "release_memory", "to_device", "worker_context", "worker_init"
    ),
    "validate": ("SetCheck", "check_experiment"),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
