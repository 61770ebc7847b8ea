"""The own-models path as a researcher meets it (issue #13): no silent wrong numbers, honest messages."""

from __future__ import annotations

import json

import pytest
import torch
from libkit import set_images, shared_runtime, write_experiment
from tiny import CLASSES

from wiseft_explorer.batching import predict_logits
from wiseft_explorer.checkpoints import CheckpointError
from wiseft_explorer.runtime import ExperimentRuntime
from wiseft_explorer.sweep import run_sweep


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
