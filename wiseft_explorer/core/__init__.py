"""The models: open_clip loading, zero-shot heads, checkpoints, weight interpolation, devices and process groups.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "checkpoints": (
        "CLASSIFIER_FORMAT", "CheckpointError", "OPEN_CLIP_FORMAT", "check_compatible",
        "load_checkpoint", "save_checkpoint"
    ),
    "distributed": (
        "DistributedError", "Group", "all_reduce_sum", "broadcast_bytes", "gather_bytes", "process_group",
        "provenance", "provenance_line"
    ),
    "heads": (
        "HeadProgress", "cached_zero_shot_head", "head_cache_key", "open_head_cache", "text_scores",
        "zero_shot_head"
    ),
    "interpolate": ("HEAD_KEYS", "WeightSpace", "Working", "interpolate_state_dicts"),
    "lineage": ("activation_of", "visual_digest"),
    "loading": ("load_clip", "load_finetuned", "load_models", "register_config"),
    "models": (
        "FeatureHead", "ImageClassifier", "LoadedClip", "Tower", "ModelLoadError", "ModelPair", "autocast", "build_zeroshot",
        "classifier_metadata", "parameter_count", "pick_device"
    ),
    "paper_pickle": ("PickleReadError", "convert_trusted_pickle", "read_trusted_pickle"),
    "tags": ("is_download_failure",),
    "timm_clip": ("check_tag_lineage",),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
