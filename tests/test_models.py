"""Model loading through open_clip (file, local-dir:, hf-hub:, tags), the zero-shot head, the classifier, devices."""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from libkit import set_images, shared_runtime
from safetensors.torch import save_file
from tiny import CLASSES, TEMPLATES, TINY_CONFIG, TINY_NAME

from wiseft_explorer.core import (
    ImageClassifier,
    ModelLoadError,
    autocast,
    load_checkpoint,
    load_clip,
    parameter_count,
    pick_device,
    register_config,
    zero_shot_head,
)
from wiseft_explorer.experiment import ModelSpec


@pytest.fixture(scope="module")
def zs_state(tiny) -> dict[str, torch.Tensor]:
    """The tiny zero-shot model's full open_clip state dict as saved on disk."""
    return load_checkpoint(tiny.zeroshot)[0]


def assert_loaded(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value.reshape(loaded[key].shape)), key


def test_load_clip_from_a_local_safetensors_file(tiny, zs_state):
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    assert clip.name == TINY_NAME
    assert_loaded(clip.model, zs_state)
    assert not clip.model.training and not any(p.requires_grad for p in clip.model.parameters())
    from PIL import Image

    assert clip.preprocess(Image.new("RGB", (50, 40))).shape == (3, 32, 32)
    assert clip.tokenizer(["a photo"]).shape == (1, TINY_CONFIG["text_cfg"]["context_length"])


def write_local_dir(folder, state, weights_name="open_clip_model.safetensors"):
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": {}}))
    if weights_name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / weights_name))
    else:
        torch.save(state, folder / weights_name)
    return folder


def test_load_clip_from_local_dir(tmp_path, tiny, zs_state):
    folder = write_local_dir(tmp_path / "st", zs_state)
    clip = load_clip(ModelSpec(TINY_NAME, f"local-dir:{folder}"))
    assert_loaded(clip.model, zs_state)
    # The same folder named as the model itself (open_clip's own schema) goes through the same safe loader.
    as_name = load_clip(ModelSpec(f"local-dir:{folder}"))
    assert_loaded(as_name.model, zs_state)
    pt_folder = write_local_dir(tmp_path / "pt", zs_state, "open_clip_pytorch_model.bin")  # weights_only torch.load
    assert_loaded(load_clip(ModelSpec(TINY_NAME, f"local-dir:{pt_folder}")).model, zs_state)


def test_local_dir_problems_are_explained(tmp_path, zs_state):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="has no open_clip_config.json"):
        load_clip(ModelSpec(TINY_NAME, f"local-dir:{empty}"))
    (empty / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    with pytest.raises(ModelLoadError, match="has no weights file"):
        load_clip(ModelSpec(TINY_NAME, f"local-dir:{empty}"))


def test_hf_hub_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    for spec in (ModelSpec("ViT-B-32", "hf-hub:laion/no-such-repo"), ModelSpec("hf-hub:laion/no-such-repo")):
        with pytest.raises(ModelLoadError) as info:
            load_clip(spec)
        message = str(info.value)
        assert "hf-hub:laion/no-such-repo" in message and "Offline?" in message and "local-dir:" in message


def test_unknown_tags_and_models_are_clear_errors(tiny, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match=f"'no-such-tag' is not an open_clip pretrained tag of {TINY_NAME} "):
        load_clip(ModelSpec(TINY_NAME, "no-such-tag", tiny.config))
    with pytest.raises(ModelLoadError, match="unknown open_clip model 'ViT-Q-99'.*zeroshot.config"):
        load_clip(ModelSpec("ViT-Q-99", None))
    with pytest.raises(ModelLoadError, match="registers model 'wiseft-tiny-rn', but zeroshot.model is 'other'"):
        register_config(tiny.config, "other")


def test_zero_shot_head_is_normalised_text_embeddings_times_logit_scale(tiny):
    clip = shared_runtime(tiny).models.clip
    head = zero_shot_head(clip.model, clip.tokenizer, CLASSES, TEMPLATES)
    rows = []
    with torch.no_grad():
        for name in CLASSES:
            emb = F.normalize(clip.model.encode_text(clip.tokenizer([t.format(name) for t in TEMPLATES])), dim=-1)
            rows.append(F.normalize(emb.mean(dim=0), dim=-1))
        expected = torch.stack(rows) * clip.model.logit_scale.exp()
    assert head.weight.shape == (len(CLASSES), TINY_CONFIG["embed_dim"])
    torch.testing.assert_close(head.weight, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(head.bias, torch.zeros(len(CLASSES)))
    torch.testing.assert_close(head.weight.norm(dim=1), clip.model.logit_scale.exp().expand(len(CLASSES)))


def test_classifier_is_tower_then_normalise_then_head(tiny):
    runtime = shared_runtime(tiny)
    pair, images = runtime.models, set_images(runtime, "ID")[:4]
    model: ImageClassifier = pair.zeroshot
    with torch.no_grad():
        features = F.normalize(pair.clip.model.encode_image(images), dim=-1)
        expected = features @ model.head.weight.T + model.head.bias
        # Same image tower as CLIP's: zero-shot logits are CLIP's own image-text similarities.
        torch.testing.assert_close(model(images), expected, atol=1e-5, rtol=1e-5)
    assert list(model.state_dict())[-2:] == ["head.weight", "head.bias"]
    assert all(k.startswith(("visual.", "head.")) for k in model.state_dict())
    assert model.num_classes == len(CLASSES) == pair.finetuned.num_classes
    assert parameter_count(model) == parameter_count(model.visual) + model.head.weight.numel() + len(CLASSES)
    assert pair.device == torch.device("cpu") and pair.precision == "fp32"
    assert pair.finetuned_metadata["recipe"] == {"kind": "test-perturbation"}


def test_pick_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        pick_device("cuda:0")
    with pytest.raises(ModelLoadError, match="'gpu-please' is not valid"):
        pick_device("gpu-please")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda")  # cuda first when there is one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")


def test_autocast_only_on_gpu():
    assert isinstance(autocast(torch.device("cpu"), "bf16"), contextlib.nullcontext)
    assert isinstance(autocast(torch.device("cuda"), "fp32"), contextlib.nullcontext)
    with warnings.catch_warnings():  # torch warns that CUDA is absent on CPU-only machines
        warnings.simplefilter("ignore", UserWarning)
        ctx = autocast(torch.device("cuda"), "fp16")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16


def test_hf_hub_id_loads_from_the_hub_cache_and_leaves_no_temp_folder(tmp_path, tiny, zs_state, monkeypatch):
    # Offline, huggingface_hub answers from its cache; lay one out as a download would have left it.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "snapshots").mkdir(parents=True)
    write_local_dir(repo / "snapshots" / commit, zs_state)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    clip = load_clip(ModelSpec(TINY_NAME, "hf-hub:org/tiny"))
    assert_loaded(clip.model, zs_state)
    assert clip.name == "hf-hub:org/tiny"
    assert list(scratch.iterdir()) == []


def _tied_rows(logits: torch.Tensor) -> set[int]:
    """Rows whose largest logit is reached by two classes or more (argmax then takes the lowest index)."""
    top = logits.max(dim=-1, keepdim=True).values
    return {i for i, n in enumerate((logits == top).sum(dim=-1).tolist()) if n > 1}


def test_the_head_runs_in_fp32_under_reduced_precision_autocast(tiny):
    # A CLIP-like head: 1,000 classes whose logits on these images lie close together around 30. In bf16 such
    # logits come in steps of 0.125, so most images' top classes tie (17 of 18 before the fix); in fp32 none do.
    # CPU autocast stands in for the GPU's (core.models.autocast does nothing on CPU): it sends nn.Linear to bf16
    # the same way.
    runtime = shared_runtime(tiny)
    visual, images = runtime.models.zeroshot.visual, set_images(runtime, "ID")
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(TINY_CONFIG["embed_dim"], 1000)
    with torch.no_grad():
        centre = F.normalize(visual(images), dim=-1).mean(0)
        head.weight.copy_(30 * F.normalize(centre + 0.03 * torch.randn(head.weight.shape, generator=gen), dim=-1))
        head.bias.zero_()
    model = ImageClassifier(visual, head).eval()
    with torch.inference_mode():
        full = model(images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reduced = model(images)
            features = model.features(images)
    assert full.dtype == reduced.dtype == features.dtype == torch.float32
    assert not _tied_rows(full) and _tied_rows(reduced) <= _tied_rows(full)
    # The tower ran in bf16 (its features differ), the head in fp32 on those features: exactly F.linear of them.
    with torch.inference_mode():
        assert not torch.equal(features, model.features(images))
        assert torch.equal(reduced, F.linear(features, head.weight, head.bias))
