"""Export -> reload round trips: our classifier format and a full open_clip state dict that open_clip loads as is."""

from __future__ import annotations

import open_clip
import pytest
import torch
from libkit import set_images, shared_runtime, write_experiment
from tiny import TINY_NAME

from wiseft_explorer.core import CLASSIFIER_FORMAT, OPEN_CLIP_FORMAT, load_checkpoint
from wiseft_explorer.evaluation import (
    ExperimentRuntime,
    export_bytes,
    export_interpolated,
    head_path,
    predict_logits,
)

ALPHA = 0.3


def test_classifier_export_reloads_as_the_fine_tuned_model(tiny, tmp_path):
    runtime = shared_runtime(tiny)
    out = export_interpolated(runtime, ALPHA, tmp_path / "wise.safetensors")
    tensors, meta = load_checkpoint(out)
    assert meta["format"] == CLASSIFIER_FORMAT and meta["model"] == TINY_NAME
    assert meta["recipe"]["wiseft"]["alpha"] == ALPHA and meta["classnames"] == list(runtime.experiment.classnames)
    assert set(tensors) == set(runtime.models.zeroshot.state_dict())
    images = set_images(runtime, "ID")
    expected = predict_logits(runtime.classifier_at(runtime.new_working(), ALPHA), images, runtime.device)
    reloaded = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, finetuned=out))
    assert torch.equal(predict_logits(reloaded.models.finetuned, images, reloaded.device), expected)
    # ... and its own weight space ends exactly there.
    at_one = reloaded.classifier_at(reloaded.new_working(), 1.0)
    assert torch.equal(predict_logits(at_one, images, reloaded.device), expected)


def test_open_clip_export_loads_with_open_clip_as_is(tiny, tmp_path):
    runtime = shared_runtime(tiny)
    out = export_interpolated(runtime, ALPHA, tmp_path / "wise-openclip.safetensors", "open_clip")
    assert load_checkpoint(out)[1]["format"] == OPEN_CLIP_FORMAT
    model = open_clip.create_model(TINY_NAME, pretrained=str(out)).eval()
    images = set_images(runtime, "ID")[:8]
    working = runtime.classifier_at(runtime.new_working(), ALPHA)
    clip = runtime.models.clip.model
    tokens = runtime.models.clip.tokenizer(["a photo of a red square."])
    with torch.no_grad():
        torch.testing.assert_close(model.encode_image(images), working.visual(images), atol=1e-6, rtol=0)
        assert torch.equal(model.encode_text(tokens), clip.encode_text(tokens))  # text tower untouched
        assert not torch.allclose(model.encode_image(images), clip.encode_image(images))
    # The file alone is not the classifier theta_alpha: its head is in the sibling file, and with it open_clip's
    # model gives theta_alpha's logits.
    assert head_path(out).name == "wise-openclip.head.safetensors" and not any("head" in k for k in model.state_dict())
    head, meta = load_checkpoint(head_path(out))
    assert meta["format"] == "wiseft-explorer/head" and meta["classnames"] == list(runtime.experiment.classnames)
    assert meta["alpha"] == ALPHA and set(head) == {"weight", "bias"}
    assert torch.equal(head["weight"], working.head.weight) and torch.equal(head["bias"], working.head.bias)
    with torch.no_grad():
        features = torch.nn.functional.normalize(model.encode_image(images), dim=-1)
        torch.testing.assert_close(torch.nn.functional.linear(features, head["weight"], head["bias"]),
                                   working(images), atol=1e-5, rtol=0)
    downloaded = tmp_path / "download.head.safetensors"  # the app's second download: the same head
    downloaded.write_bytes(export_bytes(runtime, ALPHA, head=True))
    again, again_meta = load_checkpoint(downloaded)
    assert again_meta == meta and all(torch.equal(again[k], head[k]) for k in head)
    # Our own loader reads it as a zero-shot model too (paired with the fine-tuned checkpoint of another θ₀, which
    # the lineage check refuses unless the experiment says to interpolate between them anyway).
    toml = write_experiment(tmp_path, tiny, pretrained=str(out))
    toml.write_text("allow_other_zeroshot = true\n" + toml.read_text())
    reloaded = ExperimentRuntime.from_path(toml)
    assert torch.equal(reloaded.models.clip.model.visual.conv1.weight, working.visual.conv1.weight)


def test_export_refuses_bad_names_and_formats(tiny, tmp_path):
    runtime = shared_runtime(tiny)
    with pytest.raises(ValueError, match="name the output \\*.safetensors"):
        export_interpolated(runtime, 0.5, tmp_path / "wise.pt")
    with pytest.raises(ValueError, match="unknown export format 'onnx'"):
        export_interpolated(runtime, 0.5, tmp_path / "wise.safetensors", "onnx")
    assert not list(tmp_path.iterdir())
