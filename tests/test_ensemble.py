"""The output-space ensemble beside WiSE-FT's weight-space one: (1 - alpha) logits_0 + alpha logits_1 per image."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from libkit import set_images, write_experiment
from tiny import CLASSES, TEMPLATES, TINY_NAME

from wiseft_explorer.core import build_zeroshot, classifier_metadata, load_clip, save_checkpoint
from wiseft_explorer.data import set_logits
from wiseft_explorer.evaluation import ExperimentRuntime, cached_sweep, predict_logits, run_sweep
from wiseft_explorer.experiment import ModelSpec, load_experiment
from wiseft_explorer.results import ALPHA_GRID, Curves


def far_finetuned(tiny, folder: Path, scale: float = 1.0) -> Path:
    """A fine-tuned stand-in far from the zero-shot weights: there, mixing weights and mixing outputs differ."""
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    ft = copy.deepcopy(build_zeroshot(clip, CLASSES, TEMPLATES))
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, tensor in ft.state_dict(keep_vars=True).items():
            if tensor.is_floating_point() and "running" not in name:
                spread = tensor.std() if tensor.numel() > 1 else 0.1
                tensor.add_(scale * torch.randn(tensor.shape, generator=gen) * spread)
    return save_checkpoint(folder / "far.safetensors", ft.state_dict(),
                           classifier_metadata(clip, CLASSES, recipe={"kind": "test-far-perturbation"}))


def test_the_output_space_curve_starts_and_ends_at_the_endpoints_and_mixes_logits_between(tiny, tmp_path):
    toml = write_experiment(tmp_path, tiny, finetuned=far_finetuned(tiny, tmp_path))
    runtime = ExperimentRuntime(dataclasses.replace(load_experiment(toml), workers=0))
    result = run_sweep(runtime, ALPHA_GRID)
    pair = runtime.models
    for name in runtime.set_names:
        ensemble, weights = result.ensemble_predictions[name], result.predictions[name]
        assert sorted(ensemble) == sorted(ALPHA_GRID)
        for end in (0.0, 1.0):  # exactly the endpoints' own predictions
            assert torch.equal(ensemble[end].pred, weights[end].pred) and ensemble[end].top1 == weights[end].top1
        ev, images = runtime.eval_set(name), set_images(runtime, name)
        logits0 = predict_logits(pair.zeroshot, images, runtime.device)
        logits1 = predict_logits(pair.finetuned, images, runtime.device)
        for alpha in (0.3, 0.65):  # by hand: mix the two models' logits, score as the set does, argmax
            mixed = (1 - alpha) * logits0 + alpha * logits1
            expected = set_logits(mixed, ev).argmax(-1)
            assert torch.equal(ensemble[alpha].pred.long(), expected), (name, alpha)
            assert ensemble[alpha].top1 == float((expected == ev.labels).float().mean())
    # Somewhere between the ends the two kinds of mixing disagree, or there would be nothing to show.
    assert any(not torch.equal(result.ensemble_predictions[n][a].pred, result.predictions[n][a].pred)
               for n in runtime.set_names for a in ALPHA_GRID)
    # Kept in the cache and in the stored curves: a relaunch draws the ensemble without a model.
    again = cached_sweep(ExperimentRuntime(runtime.experiment))
    assert {n: {a: p.top1 for a, p in by.items()} for n, by in again.ensemble_predictions.items()} == \
        {n: {a: p.top1 for a, p in by.items()} for n, by in result.ensemble_predictions.items()}
    curves = Curves.from_json(result.curves().to_json())
    assert curves.ensemble_curves().top1("ID", 0.5) == result.ensemble_predictions["ID"][0.5].top1


def test_a_sweep_without_both_endpoints_keeps_no_ensemble(tiny, tmp_path):
    runtime = ExperimentRuntime(dataclasses.replace(load_experiment(tiny.toml), cache_dir=tmp_path / "cache"))
    result = run_sweep(runtime, [0.0, 0.4])
    assert result.ensemble_predictions == {} and result.ensemble == {} and result.curves().ensemble_curves() is None
