"""What to evaluate: experiment TOML files -> validated dataclasses, class lists, prompts, dataset presets,
and the form that writes new experiment files.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from .._lazy import lazy_exports

_EXPORTS = {
    "forms": (
        "Form", "default_form", "experiment_table", "experiment_to_toml", "form_experiment", "form_of",
        "preset_choices", "slug"
    ),
    "labelsets": ("CIFAR10_CLASSES", "class_list", "template_list"),
    "presets": ("PRESETS", "PRESET_VERSION", "PresetError", "PresetImages", "preset_of"),
    "spec": (
        "DEFAULT_EXPERIMENT", "DatasetSpec", "EXPERIMENTS_DIR", "Experiment", "ExperimentError", "ModelSpec",
        "REPO_ROOT", "builtin_templates", "load_experiment", "load_mapping", "parse_experiment"
    ),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
