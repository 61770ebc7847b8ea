"""Merge methods: ways to build θ from θ₀ and the fine-tuned endpoints, one module per method behind one interface.

Public names load lazily on first access (see `wiseft_explorer._lazy`)."""

from ..._lazy import lazy_exports

_EXPORTS = {
    "base": ("ALPHA", "Cost", "MergeError", "MergeInputs", "MergeMethod", "ParamSpec", "TensorSlice",
             "flat_layout"),
    "fisher_estimate": ("diagonal_fisher", "fisher_flat"),
    "lines": ("build_per_depth", "depths", "lines_alphas"),
    "model_stock": ("layer_ratios", "overall_ratio", "stock_ratio"),
    "registry": ("MethodChoice", "get_method", "methods"),
    "space": ("MergedSpace", "merge_inputs"),
    "soups": ("GreedySoup", "greedy_members", "members_of"),
    "slerp": ("tensor_angles",),
    "sparse": ("trim_threshold",),
}
__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
