"""LP-FT: a linear probe, then end-to-end fine-tuning from its head; both stages recorded; on the CLI and torchrun."""

from __future__ import annotations

import json

import pytest
import test_distributed
import torch
from libkit import write_experiment
from tiny import CLASSES, TEMPLATES, TINY_NAME, write_folder

from wiseft_explorer.cli import main as cli_main
from wiseft_explorer.core import (
    build_zeroshot,
    classifier_metadata,
    load_checkpoint,
    load_clip,
    load_finetuned,
)
from wiseft_explorer.data import LabelledImages, load_eval_set
from wiseft_explorer.evaluation import ExperimentRuntime
from wiseft_explorer.experiment import DatasetSpec, ModelSpec, load_experiment
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.training import (
    FinetuneConfig,
    finetune,
    finetune_linear,
    finetune_lp_ft,
    probe_recipe,
    save_finetuned,
    training_images,
)
from wiseft_explorer.training import lpft as lpft_module

STAGE2 = FinetuneConfig(epochs=2, lr=3e-3, batch_size=16, warmup=1, bn="frozen", augment="none", seed=4)
PROBE = FinetuneConfig(mode="linear", epochs=3, lr=1e-2, batch_size=16, warmup=1, bn="frozen", augment="none", seed=4)


@pytest.fixture(scope="module")
def setup(tiny):
    """The tiny zero-shot classifier and 48 in-memory images of a learnable task (class = dominant channel)."""
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    labels = torch.arange(48) % 3
    images = torch.randn(48, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.3
    images[torch.arange(48), labels] += 1.5
    return clip, build_zeroshot(clip, CLASSES, TEMPLATES), (images, labels)


def test_stage_two_starts_exactly_from_the_probes_classifier(setup, monkeypatch):
    _, zeroshot, data = setup
    started = []
    real = lpft_module.finetune_end_to_end

    def spy(classifier, *args, **kwargs):
        started.append({k: v.clone() for k, v in classifier.state_dict().items()})
        return real(classifier, *args, **kwargs)

    monkeypatch.setattr(lpft_module, "finetune_end_to_end", spy)
    before = {k: v.clone() for k, v in zeroshot.state_dict().items()}
    result = finetune_lp_ft(zeroshot, data, STAGE2, progress=False, probe_config=PROBE)
    probe = finetune_linear(zeroshot, data, PROBE, progress=False).classifier.state_dict()
    assert len(started) == 1 and started[0].keys() == probe.keys()
    assert all(torch.equal(started[0][k], probe[k]) for k in probe)  # the probe's head, the zero-shot tower
    assert not torch.equal(probe["head.weight"], before["head.weight"])  # the probe did train the head
    tuned = result.classifier.state_dict()
    assert not torch.equal(tuned["visual.conv1.weight"], before["visual.conv1.weight"])  # stage 2 moved the tower
    assert all(torch.equal(v, before[k]) for k, v in zeroshot.state_dict().items())  # the input is left alone
    assert result.config.mode == "lp-ft" and len(result.losses) == 2 * 3  # stage 2's steps: 48 // 16 per epoch


def test_the_checkpoint_records_both_stages_and_loads_as_an_end_to_end_endpoint(setup, tiny, tmp_path):
    clip, zeroshot, data = setup
    steps = []
    result = finetune_lp_ft(zeroshot, data, STAGE2, progress=False, probe_config=PROBE,
                            callback=lambda step, total, loss: steps.append((step, total)))
    assert [s for s, _ in steps] == list(range(1, 3 * 3 + 2 * 3 + 1))  # one run: 9 probe steps, then 6
    assert {total for _, total in steps} == {15}
    path = save_finetuned(tmp_path / "lpft.safetensors", result, classifier_metadata(clip, CLASSES, recipe={"x": 1}))
    tensors, meta = load_checkpoint(path)
    assert meta["method"] == "lp-ft" and meta["recipe"]["mode"] == "lp-ft" and meta["recipe"]["x"] == 1
    assert meta["recipe"]["lr"] == STAGE2.lr and meta["recipe"]["epochs"] == STAGE2.epochs  # recipe: stage 2
    assert meta["recipe"]["departures"] == list(lpft_module.DEPARTURES) and len(meta["recipe"]["departures"]) == 2
    probe, tune = meta["stages"]
    assert (probe["stage"], probe["mode"], probe["lr"], probe["epochs"]) == ("linear probe", "linear", 1e-2, 3)
    assert (tune["stage"], tune["mode"], tune["lr"], tune["epochs"]) == ("fine-tune", "end-to-end", 3e-3, 2)
    assert probe["final_loss"] is not None and tune["final_loss"] == pytest.approx(meta["recipe"]["final_loss"])
    assert any(k.startswith("visual.") for k in tensors) and "image_tower" not in meta
    loaded, _ = load_finetuned(path, zeroshot, clip, load_experiment(tiny.toml))
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in result.classifier.state_dict().items())


def test_the_probe_defaults_to_the_runs_settings_and_reads_unaugmented_images(setup, tiny):
    clip, zeroshot, _ = setup
    config = FinetuneConfig(mode="lp-ft", epochs=2, lr=1e-4, batch_size=8)
    assert probe_recipe(config) == FinetuneConfig(mode="linear", epochs=2, lr=1e-4, batch_size=8)
    assert probe_recipe(config, 5, 0.1) == FinetuneConfig(mode="linear", epochs=5, lr=0.1, batch_size=8)
    train = load_eval_set(DatasetSpec("train", str(tiny.id_dir)), CLASSES)
    augmented, _ = training_images(train, clip.preprocess, config)  # lp-ft's stage 2 reads random crops
    assert not isinstance(augmented, LabelledImages)
    with pytest.raises(ValueError, match="probe_data="):
        finetune_lp_ft(zeroshot, augmented, config, progress=False)
    with pytest.raises(ValueError, match="finetune_lp_ft"):
        finetune(zeroshot, augmented, config, progress=False)


def test_cli_lp_ft_writes_a_checkpoint_the_sweep_accepts(tiny, tmp_path, capsys):
    train = write_folder(tmp_path / "train", 4, seed=7)
    out = tmp_path / "lpft.safetensors"
    common = ["finetune", "--experiment", str(tiny.toml), "--train", str(train), "--epochs", "1", "--batch-size", "4",
              "--warmup", "1", "--workers", "0", "--bn", "frozen", "--out", str(out)]
    assert cli_main([*common, "--probe-lr", "0.1"]) != 0 and not out.exists()
    assert "pass them with --mode lp-ft" in capsys.readouterr().err
    assert cli_main([*common, "--method", "lp-ft", "--probe-epochs", "2", "--probe-lr", "0.01"]) == 0
    printed = capsys.readouterr().out
    assert "(lp-ft," in printed and "linear probe: 2 epoch(s) at lr 0.01, final loss" in printed
    assert "fine-tune: 1 epoch(s) at lr 3e-05" in printed
    _, meta = load_checkpoint(out)
    assert [(s["mode"], s["epochs"], s["lr"]) for s in meta["stages"]] == [("linear", 2, 0.01),
                                                                          ("end-to-end", 1, 3e-5)]
    assert meta["stages"][0]["augment"] == "none" and meta["recipe"]["augment"] == "train"
    assert "RandomResizedCrop" in meta["recipe"]["train_transform"]
    toml = write_experiment(tmp_path / "exp", tiny, finetuned=out)
    assert cli_main(["sweep", "--experiment", str(toml), "--quiet", "--out", str(tmp_path / "s.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [row["alpha"] for row in rows] == list(ALPHA_GRID)
    tensors, _ = load_checkpoint(out)
    finetuned = ExperimentRuntime.from_path(toml).models.finetuned.state_dict()  # the sweep's θ₁: tower and head
    assert all(torch.equal(finetuned[k], v.float()) for k, v in tensors.items()) and "visual.conv1.weight" in tensors


def test_torchrun_lp_ft_matches_one_process(tiny, tmp_path):
    """Both stages under 2 processes (the probe's feature pass shared out, stage 2 under DDP) against one process:
    the existing distributed fine-tuning test, in LP-FT's mode, with its tolerances."""
    test_distributed.test_ddp_finetuning_matches_one_process_at_the_same_global_batch(tiny, tmp_path, "lp-ft")
