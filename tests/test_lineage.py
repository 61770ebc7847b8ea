"""A checkpoint's lineage: the trusted-pickle reader's limits, the θ₀ digest and the tag's QuickGELU."""

from __future__ import annotations

import pytest
import torch
from libkit import shared_runtime, write_evil_pickles, write_experiment
from paper_model import paper_checkpoint

from wiseft_explorer.core import (
    CheckpointError,
    PickleReadError,
    convert_trusted_pickle,
    load_checkpoint,
    save_checkpoint,
)
from wiseft_explorer.evaluation import ExperimentRuntime
from wiseft_explorer.experiment import TEMPLATE_SETS, TEMPLATE_SOURCES, template_list


def test_trusted_convert_still_refuses_code_and_names_the_file(tmp_path):
    files = write_evil_pickles(tmp_path, tmp_path / "PWNED")
    with pytest.raises(PickleReadError) as info:
        convert_trusted_pickle(files["raw"], tmp_path / "out.safetensors")
    message = str(info.value)
    assert "\n" not in message and message.startswith("evil-raw.bin:") and "io.open" in message
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("how", ["torch.save", "state dict"])
def test_other_ways_of_saving_the_paper_classifier_convert_alike(tiny, tmp_path, how):
    runtime = shared_runtime(tiny)
    dumped = paper_checkpoint(runtime.models.clip.model, runtime.models.finetuned, tmp_path / "dumped.pt")
    reference, _ = load_checkpoint(convert_trusted_pickle(dumped, tmp_path / "dumped.safetensors"))
    other = tmp_path / "other.pt"
    save = torch.save if how == "torch.save" else lambda module, path: torch.save(module.state_dict(), path)
    paper_checkpoint(runtime.models.clip.model, runtime.models.finetuned, other, save=save)
    converted, meta = load_checkpoint(convert_trusted_pickle(other, tmp_path / "other.safetensors"))
    assert meta["activation"] == "quick_gelu" and set(converted) == set(reference)
    assert all(torch.equal(converted[k], reference[k]) for k in reference)


def test_a_fine_tuned_checkpoint_is_tied_to_its_zero_shot(tiny, tmp_path):
    runtime = shared_runtime(tiny)
    tensors, meta = load_checkpoint(tiny.finetuned)
    assert len(meta["zeroshot_digest"]) == 16  # recorded when written (classifier_metadata)
    other = save_checkpoint(tmp_path / "ft-other.safetensors", tensors, {**meta, "zeroshot_digest": "0" * 16})
    toml = write_experiment(tmp_path, tiny, finetuned=other)
    with pytest.raises(CheckpointError) as info:
        ExperimentRuntime.from_path(toml).models  # noqa: B018 - loading is the point
    message = str(info.value)
    assert "\n" not in message and "0" * 16 in message and "allow_other_zeroshot" in message
    toml.write_text("allow_other_zeroshot = true\n" + toml.read_text())
    pair = ExperimentRuntime.from_path(toml).models
    assert any("allow_other_zeroshot = true" in note for note in pair.notes)
    assert torch.equal(pair.finetuned.head.weight, runtime.models.finetuned.head.weight)


def test_an_openai_tag_is_created_with_quick_gelu(monkeypatch):
    import open_clip

    from wiseft_explorer.core import loading

    seen = {}

    def fake_create(name, pretrained=None, **kwargs):
        seen.update(kwargs, name=name)
        raise RuntimeError("stop here")

    monkeypatch.setattr(loading, "check_tag_available", lambda name, tag: None)
    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    with pytest.raises(RuntimeError, match="stop here"):
        loading._create("ViT-B-32", "openai")
    assert seen["force_quick_gelu"] is True
    with pytest.raises(RuntimeError, match="stop here"):
        loading._create("ViT-B-32", "laion2b_s34b_b79k")
    assert seen["force_quick_gelu"] is False


def test_the_paper_prompt_sets_are_named_with_their_source():
    assert template_list("paper-simple") == ("a photo of a {}.",) and len(template_list("openai")) == 80
    assert "not in the paper's code" in TEMPLATE_SOURCES["cifar10"]
    assert {"openai", "paper-simple", "simple", "cifar10"} <= set(TEMPLATE_SOURCES) == set(TEMPLATE_SETS)
    assert all("paper's" in TEMPLATE_SOURCES[k] for k in ("openai", "paper-simple", "iwildcam", "fmow"))
