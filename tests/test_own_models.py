"""The own-models path as a researcher meets it (issue #13): no silent wrong numbers, honest messages."""

from __future__ import annotations

import json
import logging
import time

import pytest
import torch
from libkit import cli_env, run_cli_parallel, set_images, shared_runtime, write_experiment
from tiny import CLASSES, TINY_NAME, write_folder

from wiseft_explorer.core import CheckpointError
from wiseft_explorer.evaluation import ExperimentRuntime, predict_logits, run_sweep


def _with_classes(tmp_path, tiny, names: list[str], name: str = "exp.toml"):
    toml = write_experiment(tmp_path, tiny, name=name, shifts=[])
    text = toml.read_text().replace(f"names = {json.dumps(CLASSES)}", f"names = {json.dumps(names)}")
    toml.write_text(text)
    return toml


def test_a_reordered_class_list_remaps_the_fine_tuned_head_and_says_so(tiny, tmp_path):
    reference = shared_runtime(tiny)
    reordered = [CLASSES[1], CLASSES[2], CLASSES[0]]
    runtime = ExperimentRuntime.from_path(_with_classes(tmp_path, tiny, reordered))
    images = set_images(reference, "ID")
    with torch.no_grad():
        expected = predict_logits(reference.models.finetuned, images, "cpu")
        got = predict_logits(runtime.models.finetuned, images, "cpu")
    order = [CLASSES.index(c) for c in reordered]
    assert torch.allclose(got, expected[:, order], atol=1e-5)  # row i of the head scores class i of the experiment
    assert any("another order" in note and "reordered" in note for note in runtime.model_notes())
    # The numbers match the experiment in the checkpoint's own order (without the remap: 81.2 -> 45.0 in the issue).
    ours = run_sweep(runtime, [0.0, 1.0]).table()
    theirs = run_sweep(reference, [0.0, 1.0]).table()
    assert ours.loc[1.0, "ID"] == pytest.approx(theirs.loc[1.0, "ID"])
    assert ours.loc[0.0, "ID"] == pytest.approx(theirs.loc[0.0, "ID"])
    assert reference.model_notes() == []


def test_other_class_names_are_refused_side_by_side(tiny, tmp_path):
    renamed = [CLASSES[0], "purple triangle", CLASSES[2]]
    runtime = ExperimentRuntime.from_path(_with_classes(tmp_path, tiny, renamed))
    with pytest.raises(CheckpointError) as err:
        runtime.models  # noqa: B018
    message = str(err.value)
    assert "\n" not in message and "fine-tuned on other classes" in message
    assert "#1: experiment 'purple triangle', checkpoint 'green circle'" in message
    assert "only in the checkpoint: ['green circle']" in message and "only in the experiment: ['purple triangle']" in message


@pytest.fixture(scope="module")
def finetune_runs(tiny, tmp_path_factory):
    """`finetune` through the CLI: the README's way (its [finetuned] file not there yet), and without --experiment."""
    root = tmp_path_factory.mktemp("ft-own")
    train = write_folder(root / "train", 4, seed=3)
    toml = write_experiment(root, tiny, finetuned=root / "ft.safetensors", shifts=[])  # does not exist yet
    commands = {
        "readme": ["finetune", "--experiment", str(toml), "--train", str(train), "--out", str(root / "ft.safetensors"),
                   "--epochs", "2", "--batch-size", "4", "--workers", "0"],
        "no-experiment": ["finetune", "--train", str(train), "--out", str(root / "other.safetensors")],
        "alpha": ["finetune", "--experiment", str(toml), "--train", str(train), "--out", str(root / "x.safetensors"),
                  "--alpha", "0.5"],
        "help": ["finetune", "--help"],
    }
    # The sweep before fine-tuning runs alone first: beside the fine-tuning, it could find the checkpoint written.
    results = run_cli_parallel({"sweep-before": ["sweep", "--experiment", str(toml), "--quiet"]}, root, cli_env())
    results.update(run_cli_parallel(commands, root, cli_env(), timeout=240))
    results["sweep-after"] = run_cli_parallel({"s": ["sweep", "--experiment", str(toml), "--quiet", "--alpha", "1"]},
                                              root, cli_env(), timeout=240)["s"]
    return root, results


def test_finetune_with_the_readme_toml_does_not_need_the_checkpoint_it_writes(finetune_runs):
    root, runs = finetune_runs
    before = runs["sweep-before"]
    assert before.returncode == 2 and len(before.error_lines()) == 1
    assert "fine-tune first with `wiseft-explorer finetune" in before.stderr and "--train TRAIN_FOLDER" in before.stderr
    readme = runs["readme"]
    assert readme.returncode == 0, readme.stderr
    assert (root / "ft.safetensors").is_file() and runs["sweep-after"].returncode == 0, runs["sweep-after"].stderr


def test_finetune_records_what_ran_and_prints_loss_and_training_accuracy(finetune_runs):
    from wiseft_explorer.core import load_checkpoint

    root, runs = finetune_runs
    _, meta = load_checkpoint(root / "ft.safetensors")
    recipe = meta["recipe"]
    assert recipe["warmup"] == 1  # 2 epochs x 3 steps: a tenth of the run, not the 500 asked for by default
    assert 0 <= recipe["train_accuracy"] <= 1 and recipe["final_loss"] > 0
    out = runs["readme"].stdout
    assert "warmup 1 steps" in out and f"final loss {recipe['final_loss']:.4f}" in out
    assert f"training accuracy {100 * recipe['train_accuracy']:.1f}%" in out


def test_finetune_needs_an_experiment_for_a_folder_and_takes_no_alpha(finetune_runs):
    _, runs = finetune_runs
    missing = runs["no-experiment"]
    assert missing.returncode == 2 and "needs --experiment" in missing.stderr
    assert not (finetune_runs[0] / "other.safetensors").exists()
    assert runs["alpha"].returncode == 2 and "unrecognized arguments: --alpha" in runs["alpha"].stderr
    text = " ".join(runs["help"].stdout.split())  # argparse wraps lines
    assert "--alpha" not in text and "(default: 10," in text and "(default: 3e-05," in text
    assert "(default: 500," in text and "(default: 512," in text and "--bn {frozen,train} BatchNorm" in text
    assert "the paper's model.train()" in text and "RandomResizedCrop scale 0.9-1" in text


def test_loading_local_weights_logs_no_false_random_init_warning(tiny, caplog):
    from wiseft_explorer.core import load_clip
    from wiseft_explorer.experiment import ModelSpec

    with caplog.at_level("WARNING"):
        load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
    other = logging.getLogger("some.library")
    with caplog.at_level("WARNING"):
        other.warning("other records still pass")
        logging.warning("No pretrained weights loaded for model 'X'. Model initialized randomly.")  # a real one
    assert [r.getMessage()[:5] for r in caplog.records] == ["other", "No pr"]


@pytest.mark.parametrize("how", ["env", "no-network"])
def test_an_uncached_tag_offline_fails_at_once_with_one_sentence(monkeypatch, how):
    from wiseft_explorer.core import ModelLoadError, load_clip, tags
    from wiseft_explorer.experiment import ModelSpec

    if how == "env":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

        def refuse(*args, **kwargs):
            raise OSError("Name or service not known")

        monkeypatch.setattr(tags.socket, "create_connection", refuse)
    assert not tags.tag_cached("ViT-B-32", "openai")
    start = time.monotonic()
    with pytest.raises(ModelLoadError) as err:
        load_clip(ModelSpec("ViT-B-32", "openai"))
    assert time.monotonic() - start < 10  # not a download retried for 50 s
    message = str(err.value)
    assert "\n" not in message and message.endswith("set zeroshot.pretrained to a local .safetensors file")
    assert "'openai' for ViT-B-32 are not on this machine and it is offline" in message


def test_the_sidebar_facts_label_both_parameter_counts(tiny):
    from wiseft_explorer.core import parameter_count

    runtime = shared_runtime(tiny)
    facts = runtime.describe()
    classifier = parameter_count(runtime.models.zeroshot) / 1e6
    clip = parameter_count(runtime.models.clip.model) / 1e6
    assert facts["zero-shot"] == (f"{TINY_NAME} (classifier: image tower + head {classifier:.2f} M params; "
                                  f"whole CLIP with its text tower {clip:.2f} M)")
    assert clip > classifier


def test_gallery_pictures_keep_their_aspect_ratio(tmp_path):
    import numpy as np
    from PIL import Image

    from wiseft_explorer.data import EvalSet

    wide = np.zeros((50, 100, 3), np.uint8)  # black, twice as wide as high
    Image.fromarray(wide).save(tmp_path / "wide.png")
    ev = EvalSet("S", torch.tensor([0]), paths=[str(tmp_path / "wide.png")])
    thumb = np.asarray(ev.picture(0, size=96))
    assert thumb.shape == (96, 96, 3)
    dark_rows = (thumb.mean(axis=(1, 2)) < 128).sum()
    assert dark_rows == 48  # the picture fills the width and half the height; the rest is a white letterbox
    assert (thumb.mean(axis=(0, 2)) < 128).sum() == 96


def test_metric_card_titles_are_short_and_the_help_names_the_sets(tiny, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("WISEFT_EXPERIMENT", str(tiny.toml))
    at = AppTest.from_file(str(Path(__file__).parent.parent / "app.py"), default_timeout=120).run()
    assert not at.exception
    labels = [m.label for m in at.metric]
    assert labels == ["ID at α = 0.5", "ID, zero-shot (α = 0)", "ID, fine-tuned (α = 1)",
                      "Shifts at α = 0.5", "Shifts, zero-shot (α = 0)", "Shifts, fine-tuned (α = 1)"]
    assert all(len(label) <= 26 for label in labels)  # three cards a row: a third of the page each
    helps = [m.proto.help for m in at.metric]
    assert "**ID**" in helps[0] and "2 shift sets: Dark, Same" in helps[3]


def test_a_shared_link_carries_the_experiment(tiny, monkeypatch, tmp_path):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from wiseft_explorer.ui import state

    folder = tmp_path / "experiments"
    folder.mkdir()
    toml = write_experiment(folder, tiny, name="mine.toml", shifts=[])
    monkeypatch.setenv("WISEFT_EXPERIMENTS_DIR", str(folder))
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(tiny.toml))  # the default is another experiment
    app = str(Path(__file__).parent.parent / "app.py")
    at = AppTest.from_file(app, default_timeout=120)
    at.query_params["experiment"] = "mine.toml"
    at.query_params["alpha"] = "0.25"
    at.run()
    assert not at.exception
    assert at.session_state[state.EXPERIMENT_KEY] == str(toml.resolve())
    assert at.query_params["experiment"] in ("mine.toml", ["mine.toml"])  # AppTest may give a list
    for bad in ("../tiny.toml", "/etc/passwd", "nope.toml"):
        other = AppTest.from_file(app, default_timeout=120)
        other.query_params["experiment"] = bad
        other.run()
        assert not other.exception and any("Ignoring `?experiment=" in w.value for w in other.warning)
        assert other.session_state[state.EXPERIMENT_KEY] == str(tiny.toml.resolve())
