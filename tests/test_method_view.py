"""What the app shows of the merge methods, without Streamlit: the options and their reasons, a method's path on
a fair sample, the label-free table, and a method over a linear-classifier endpoint (a shared image tower)."""

from __future__ import annotations

import copy
import shutil

import torch

from wiseft_explorer.core import load_checkpoint, save_checkpoint
from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.evaluation.merging import with_method


def _linear_endpoint(tiny, tmp_path):
    """The tiny experiment whose fine-tuned endpoint changed only the head (a linear classifier)."""
    root = tmp_path / "lin"
    shutil.copytree(tiny.root, root, ignore=shutil.ignore_patterns("cache"))
    runtime = ExperimentRuntime.from_path(root / "tiny.toml")
    probe = copy.deepcopy(runtime.models.zeroshot)
    with torch.no_grad():
        probe.head.weight.copy_(torch.randn(probe.head.weight.shape, generator=torch.Generator().manual_seed(3)))
    meta = load_checkpoint(root / "finetuned.safetensors")[1]
    save_checkpoint(root / "finetuned.safetensors", probe.state_dict(), meta)
    return root / "tiny.toml"


def test_a_method_over_a_shared_tower_evaluates_its_own_head_not_the_lines(tiny, tmp_path):
    runtime = ExperimentRuntime.from_path(_linear_endpoint(tiny, tmp_path))
    assert runtime.space.shared_tower  # the plain line takes the features-once path
    ends = run_sweep(runtime, [0.0, 1.0], resume=False)
    # LiNeS with β = 1 at α = 0: the head end (the classifier's head) at α = 1, the tower at θ₀ (= θ₁'s tower):
    # exactly the fine-tuned model, not the zero-shot one the straight line's head at α = 0 would give.
    lines = run_sweep(with_method(runtime, "lines", {"beta": 1.0}), [0.0], resume=False)
    for name in runtime.set_names:
        assert torch.equal(lines.predictions[name][0.0].pred, ends.predictions[name][1.0].pred), name
    assert any(not torch.equal(ends.predictions[n][0.0].pred, ends.predictions[n][1.0].pred)
               for n in runtime.set_names)  # the two heads disagree somewhere: the check above can fail
