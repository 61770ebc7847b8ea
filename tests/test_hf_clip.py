"""Hugging Face `transformers` CLIP folders as θ₀ and θ₁ (issue #28 item 5): tiny random models built here, the
same image features and zero-shot logits as transformers computes, and honest refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny import CLASSES, write_folder
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

from wiseft_explorer.core import CheckpointError, ModelLoadError, build_zeroshot, load_clip, load_models
from wiseft_explorer.experiment import ModelSpec, load_experiment

VISION = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
          "image_size": 32, "patch_size": 8}
TEXT = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def hf_clip(folder: Path, act: str = "quick_gelu", seed: int = 0) -> CLIPModel:
    """A tiny random transformers CLIPModel, saved (config.json + model.safetensors) in `folder`."""
    torch.manual_seed(seed)
    config = CLIPConfig(text_config={**TEXT, "hidden_act": act}, vision_config={**VISION, "hidden_act": act},
                        projection_dim=16)
    model = CLIPModel(config).eval()
    model.save_pretrained(folder)
    return model


def hf_vision(folder: Path, clip: CLIPModel, act: str = "quick_gelu") -> CLIPVisionModelWithProjection:
    """A 'fine-tuned' CLIPVisionModelWithProjection: the CLIP's image tower, every weight perturbed, saved."""
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION, hidden_act=act, projection_dim=16)).eval()
    own = {k: v for k, v in clip.state_dict().items() if k.startswith(("vision_model.", "visual_projection."))}
    gen = torch.Generator().manual_seed(7)
    model.load_state_dict({k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in own.items()}, strict=False)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_a_transformers_clip_gives_its_own_features_and_zero_shot_logits(tmp_path, act):
    hf = hf_clip(tmp_path / "clip", act)
    clip = load_clip(ModelSpec("hf-tiny", f"transformers:{tmp_path / 'clip'}"))
    prompts = [f"a photo of a {c}." for c in CLASSES]
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        theirs = hf(input_ids=clip.tokenizer(prompts), pixel_values=images)
        raw = hf.visual_projection(hf.vision_model(pixel_values=images).pooler_output)
        classifier = build_zeroshot(clip, CLASSES, ["a photo of a {}."])  # one template: the prompts above
        assert torch.allclose(clip.model.encode_image(images), raw, atol=1e-5)
        assert torch.allclose(classifier.features(images), theirs.image_embeds, atol=1e-5)
        assert torch.allclose(classifier(images), theirs.logits_per_image, atol=1e-5)
    assert clip.name == "hf-tiny"


def _experiment(root: Path, checkpoint: str, model: str = "hf-tiny") -> Path:
    write_folder(root / "id", 2, seed=1)
    toml = root / "exp.toml"
    toml.write_text(f"""device = "cpu"
cache_dir = "cache"
[zeroshot]
model = "{model}"
pretrained = "transformers:clip"
[finetuned]
checkpoint = "{checkpoint}"
[classes]
names = {CLASSES!r}
templates = ["a photo of a {{}}."]
[id]
source = "id"
""".replace("'", '"'))
    return toml


def test_a_vision_model_with_projection_is_the_fine_tuned_endpoint(tmp_path):
    hf = hf_clip(tmp_path / "clip")
    ft = hf_vision(tmp_path / "ft", hf)
    exp = load_experiment(_experiment(tmp_path, "transformers:ft"))
    assert exp.zeroshot.pretrained == f"transformers:{tmp_path / 'clip'}"
    assert exp.finetuned == tmp_path / "ft" / "model.safetensors"
    pair = load_models(exp)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pair.finetuned.features(images), F.normalize(ft(pixel_values=images).image_embeds),
                              atol=1e-5)
        # An image tower alone: the zero-shot head scores it, and θ₀ and θ₁ share every key (one flat lerp).
        assert torch.equal(pair.finetuned.head.weight, pair.zeroshot.head.weight)
    assert pair.finetuned.state_dict().keys() == pair.zeroshot.state_dict().keys()


def test_a_fine_tune_with_another_activation_is_refused(tmp_path):
    hf = hf_clip(tmp_path / "clip", "quick_gelu")
    hf_vision(tmp_path / "ft", hf, act="gelu")
    with pytest.raises(CheckpointError, match="records activation gelu.*builds quick_gelu"):
        load_models(load_experiment(_experiment(tmp_path, "transformers:ft")))


def test_a_model_name_of_another_architecture_is_refused(tmp_path):
    hf_clip(tmp_path / "clip")
    with pytest.raises(ModelLoadError, match="'ViT-B-32' is not the architecture of .*quick_gelu False vs True"):
        load_clip(ModelSpec("ViT-B-32", f"transformers:{tmp_path / 'clip'}"))


def test_a_vision_only_folder_cannot_be_the_zero_shot_model(tmp_path):
    hf_vision(tmp_path / "ft", hf_clip(tmp_path / "clip"))
    with pytest.raises(ModelLoadError, match="no text tower"):
        load_clip(ModelSpec("hf-tiny", f"transformers:{tmp_path / 'ft'}"))


def test_without_transformers_the_message_says_how_to_install_it(tmp_path, monkeypatch):
    hf_clip(tmp_path / "clip")
    monkeypatch.setitem(sys.modules, "transformers", None)  # `import transformers` now raises ImportError
    with pytest.raises(ModelLoadError, match=r"pip install \.\[transformers\]") as err:
        load_clip(ModelSpec("hf-tiny", f"transformers:{tmp_path / 'clip'}"))
    assert isinstance(err.value.__cause__, ImportError)


def test_a_folder_without_weights_is_named_when_the_experiment_is_read(tmp_path):
    (tmp_path / "ft").mkdir()
    hf_clip(tmp_path / "clip")
    with pytest.raises(ValueError, match="ft has no weights file .*model.safetensors"):
        load_experiment(_experiment(tmp_path, "transformers:ft"))


def test_the_models_page_form_takes_transformers_and_timm_folders(tmp_path):
    from wiseft_explorer.experiment import default_form, experiment_to_toml, form_experiment, weight_help

    hf_clip(tmp_path / "clip")
    (tmp_path / "ft").mkdir()
    (tmp_path / "ft" / "model.safetensors").write_bytes(b"0")  # the form checks paths; nothing is loaded here
    write_folder(tmp_path / "id", 1, seed=1)
    form = {**default_form(), "model": "hf-tiny", "pretrained": "transformers:clip", "finetuned": "timm:ft",
            "classes": "\n".join(CLASSES), "id_source": "id"}
    exp = form_experiment(form, tmp_path)
    assert exp.zeroshot.pretrained == f"transformers:{tmp_path / 'clip'}"
    assert exp.finetuned == tmp_path / "ft" / "model.safetensors"
    assert f'pretrained = "transformers:{tmp_path / "clip"}"' in experiment_to_toml(exp)
    assert "transformers:FOLDER" in weight_help("pretrained") and "timm:FOLDER" in weight_help("finetuned")


def test_the_readme_shows_each_source_in_one_toml_snippet():
    import tomllib

    from readme_walk import blocks, section

    text = section("Your own models and data").split("### Checkpoints from Hugging Face `transformers` and timm")[1]
    snippets = [tomllib.loads(b.text) for b in blocks(text) if b.lang == "toml"]
    assert [s["finetuned"]["checkpoint"].split(":")[0] for s in snippets] == ["transformers", "timm"]
    assert snippets[0]["zeroshot"]["pretrained"].startswith("transformers:")


def test_a_transformers_folders_weights_are_part_of_the_cache_keys(tmp_path):
    from wiseft_explorer.store import zeroshot_identity

    hf_clip(tmp_path / "clip", seed=0)
    spec = ModelSpec("hf-tiny", f"transformers:{tmp_path / 'clip'}")
    before = zeroshot_identity(spec)
    hf_clip(tmp_path / "clip", seed=1)  # other weights in the same folder: heads and sweeps must not be reused
    assert zeroshot_identity(spec)["zeroshot"] != before["zeroshot"]
