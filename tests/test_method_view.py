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


def test_the_benchmark_times_every_method_the_experiment_can_run_and_skips_the_rest(tiny):
    from benchmarks.bench_merging import method_sliders

    runtime = ExperimentRuntime.from_path(tiny.toml)
    images = torch.rand(2, 3, 32, 32)
    calls = {}

    def timed(fns, repeats, device=None):  # one call each, no clock: what is timed, not how fast
        calls.update({name: fn() for name, fn in fns.items()})
        return dict.fromkeys(fns, 0.001 * repeats)

    fig = method_sliders(runtime, images, torch.tensor([0, 1]), None, timed, 2)
    assert {"slerp", "lines", "soup", "ties-trim", "dare"} <= set(calls)
    assert set(fig["demo_methods_skipped"]) == {"model-stock", "fisher"}  # one endpoint, no Fishers
    assert fig["demo_slerp_ms"] == 2.0 and fig["demo_methods_max_ms"] == 2.0


def test_the_lesson_gains_a_soups_and_label_free_step_with_its_numbers_from_the_curves():
    from test_lesson import _curves

    from wiseft_explorer.presentation import lesson_steps
    from wiseft_explorer.presentation.lesson import MergeFacts

    curves = _curves()
    plain = lesson_steps(curves)
    facts = MergeFacts(3, (0.812, 0.634), (("Model Stock ratio", 0.41),))
    steps = lesson_steps(curves, merging=facts)
    assert [s.slug for s in steps] == [s.slug for s in plain[:-1]] + ["soups-label-free", plain[-1].slug]
    step = steps[-2]
    chosen = steps[3].alpha
    near = min(curves.alphas, key=lambda a: abs(a - 0.41))
    gap = curves.accuracies(near)[curves.id_set] - curves.accuracies(chosen)[curves.id_set]
    assert "3 fine-tuned models" in step.text and "81.2%" in step.text and "63.4%" in step.text
    assert f"Model Stock ratio gives α ≈ 0.41, where {curves.id_set} is {100 * gap:+.1f} points" in step.text
    assert step.markers == (("Model Stock ratio", 0.41),) and step.alpha == chosen


def test_lines_expert_offsets_set_each_depths_alpha_by_hand():
    import pytest

    from wiseft_explorer.core.merging import MergeError, MergeInputs, TensorSlice, get_method

    t0, t1 = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([3.0, -1.0, 0.5, 2.0, 9.0])
    layout = [TensorSlice("visual.conv1.weight", torch.float32, 0, 2),
              TensorSlice("visual.layer1.0.w", torch.float32, 2, 3), TensorSlice("head.weight", torch.float32, 3, 5)]
    inp = MergeInputs({torch.float32: t0.clone()}, [{torch.float32: t1.clone()}], layout)
    out = {torch.float32: torch.empty(5)}
    lines = get_method("lines")
    lines.build(inp, {"alpha": 0.2, "beta": 0.6, "offsets": "0,-0.2,0.5"}, out)  # β is ignored: the offsets rule
    alphas = torch.tensor([0.2, 0.2, 0.0, 0.7, 0.7])  # stem 0.2 + 0, block 0.2 − 0.2, head end 0.2 + 0.5
    assert torch.allclose(out[torch.float32], t0 + alphas * (t1 - t0))
    lines.build(inp, {"alpha": 0.2, "beta": 0.6, "offsets": ""}, out)  # empty: β's line, as before
    assert torch.allclose(out[torch.float32], t0 + torch.tensor([0.2, 0.2, 0.5, 0.8, 0.8]) * (t1 - t0))
    with pytest.raises(MergeError, match="3 depths"):
        lines.build(inp, {"alpha": 0.2, "beta": 0.0, "offsets": "0,1"}, out)
    with pytest.raises(MergeError, match="numbers separated by commas"):
        lines.build(inp, {"alpha": 0.2, "beta": 0.0, "offsets": "a,b,c"}, out)


def test_a_merge_methods_cards_carry_no_standard_error_of_the_line():
    from test_cards import _curves

    from wiseft_explorer.presentation import metric_cards

    curves = _curves()
    line = metric_cards(curves, 0.5, curves.accuracies(0.5))
    method = metric_cards(curves, 0.5, {"ID": 0.66, "Sketch": 0.41, "avg_shifts": 0.41}, paired=False)
    assert line[0][1].delta == "+5.0 pts ± 0.8"  # WiSE-FT's paired error on its own grid point
    assert [c.delta for c in method[0][1:]] == ["+6.0 pts", "-4.0 pts"]  # another model: no paired error
    assert method[0][0].value == "66.0%"


def test_model_stocks_landing_point_is_set_beside_the_labelled_best_alpha():
    from test_cards import _curves

    from wiseft_explorer.presentation.merge_views import MethodDrawing, landing_caption
    from wiseft_explorer.results import Curves

    curves = _curves()  # best held-out α: ID-val is flat, so the tie goes to the α nearest 0.5
    path = Curves("ID", None, ["Sketch"], [0.0, 0.5, 1.0], {"ID": {0.0: 0.6, 0.5: 0.7, 1.0: 0.72},
                                                             "Sketch": {0.0: 0.5, 0.5: 0.45, 1.0: 0.44}})
    text = landing_caption(MethodDrawing("Model Stock", path, 0.5, 100), curves)
    assert text.startswith("Model Stock lands (α = 1, the ◆ on its path) at 72.0% ID and 44.0% on the shifts")
    assert "labelled best α = 0.5 (chosen on ID-val) scores 65.0% and 40.0%." in text
