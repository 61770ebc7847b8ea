"""What to evaluate: experiment TOML files -> validated dataclasses, class lists, prompts, dataset presets,
and the form that writes new experiment files.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "forms": (
        "Form", "default_form", "experiment_table", "experiment_to_toml", "form_experiment", "form_of",
        "preset_choices", "relative_paths_note", "slug", "weight_help", "WEIGHT_SOURCES"
    ),
    "labelsets": ("CIFAR10_CLASSES", "TEMPLATE_SETS", "TEMPLATE_SOURCES", "class_list", "template_list"),
    "presets": ("PRESETS", "PRESET_VERSION", "PresetError", "PresetImages", "preset_of"),
    "locations": (
        "BUILTIN_EXPERIMENTS", "DEFAULT_EXPERIMENT", "DEMO_ASSETS", "ENV_EXPERIMENTS_DIR", "experiment_folders",
        "experiment_label", "listed_experiments", "named_experiment", "user_experiments_dir"
    ),
    "parse": ("builtin_templates", "load_experiment", "load_mapping", "parse_experiment"),
    "spec": (
        "HEAD_POLICIES", "DatasetSpec", "Endpoint", "Experiment", "ExperimentError", "ModelSpec", "PRECISIONS"
    ),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
