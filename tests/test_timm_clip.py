"""timm CLIP towers (vit_*_clip_*) as the fine-tuned endpoint (issue #28 item 6): a tiny random timm ViT built here
computes the same features through open_clip's names, the pretrained tag is checked against θ₀, and a timm
classifier head (`*_ft_in1k`, saved by timm as the Hub holds it) gives timm's logits at α=1 and the zero-shot
classifier's predictions at α=0."""

from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from timm import create_model
from timm.data import create_transform, resolve_data_config
from timm.models._hub import save_for_hf
from timm.models.vision_transformer import VisionTransformer
from tiny import CLASSES, write_folder
from torch import nn

from wiseft_explorer.core import (
    CheckpointError,
    WeightSpace,
    build_zeroshot,
    check_tag_lineage,
    load_checkpoint,
    load_models,
    save_checkpoint,
)
from wiseft_explorer.core.timm_clip import preprocess_note, timm_classifier_head
from wiseft_explorer.data import load_batch, load_eval_set
from wiseft_explorer.evaluation import ExperimentRuntime, export_interpolated, run_sweep
from wiseft_explorer.evaluation.predict import zero_shot_with_extra
from wiseft_explorer.experiment import ExperimentError, ModelSpec, load_experiment, weight_help

NAME = "timm-test-vit"
CONFIG = {"embed_dim": 16, "quick_gelu": True,
          "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 48, "layers": 2, "head_width": 12},
          "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 1}}


def timm_vit(num_classes: int = 16, act: str = "quick_gelu", seed: int = 1) -> VisionTransformer:
    """A tiny random timm CLIP tower (pre-norm, class token); a head of embed_dim outputs stands for CLIP's
    projection, with a zero bias, as timm's untuned CLIP tags hold it."""
    torch.manual_seed(seed)
    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=2, num_heads=4, num_classes=num_classes,
                              pre_norm=True, norm_layer=partial(nn.LayerNorm, eps=1e-5), act_layer=act,
                              global_pool="token")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # away from timm's init (zeros, ones) so every weight matters
        if num_classes == 16:
            model.head.bias.zero_()
    return model.eval()


def timm_classifier() -> VisionTransformer:
    """A tiny random `vit_base_patch32_clip_224.openai_ft_in1k` as timm builds it (GELU, a head with a bias on the
    final-norm class token), with one output per experiment class."""
    torch.manual_seed(2)
    model = create_model("vit_base_patch32_clip_224.openai_ft_in1k", pretrained=False, img_size=32, patch_size=8,
                         embed_dim=48, depth=2, num_heads=4, num_classes=len(CLASSES))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def _project(root: Path, vit: VisionTransformer, arch: str = "vit_tiny_clip_quickgelu_32",
             tag: str = "openai_ft_tiny", name: str = NAME, hub: bool | str = False, preprocess: str = "") -> Path:
    """θ₀ (a tiny open_clip ViT file; GELU unless the name is NAME), the timm folder (config.json +
    model.safetensors, written by timm itself when `hub`) and the experiment."""
    config = root / f"{name}.json"
    config.write_text(json.dumps({**CONFIG, "quick_gelu": name == NAME}))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    save_checkpoint(root / "zeroshot.safetensors", open_clip.create_model(name).state_dict())
    if hub:
        save_for_hf(vit, str(root / "ft"), safe_serialization=hub == "safetensors" or hub is True)
    else:
        (root / "ft").mkdir()
        save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(root / "ft" / "model.safetensors"))
        (root / "ft" / "config.json").write_text(json.dumps({"architecture": arch, "num_classes": vit.num_classes,
                                                             "pretrained_cfg": {"tag": tag}}))
    write_folder(root / "id", 2, seed=1)
    toml = root / "exp.toml"
    toml.write_text(f"""device = "cpu"
cache_dir = "cache"
[zeroshot]
model = "{name}"
pretrained = "zeroshot.safetensors"
config = "{config.name}"
{preprocess}
[finetuned]
checkpoint = "timm:ft"
[classes]
names = {json.dumps(CLASSES)}
templates = ["a photo of a {{}}."]
[id]
source = "id"
""")
    return toml


def test_a_timm_clip_tower_computes_the_same_features_through_open_clips_names(tmp_path):
    vit = timm_vit()
    pair = load_models(load_experiment(_project(tmp_path, vit)))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pair.finetuned.features(images), F.normalize(vit(images)), atol=1e-5)
        assert torch.equal(pair.finetuned.head.weight, pair.zeroshot.head.weight)  # the zero-shot head scores it
    assert pair.finetuned.state_dict().keys() == pair.zeroshot.state_dict().keys()  # one flat lerp
    assert any("openai CLIP weights (timm tag openai_ft_tiny)" in n and "could not be checked" in n
               for n in pair.notes)


def test_a_timm_classifier_is_timm_at_one_and_the_zero_shot_classifier_at_zero(tmp_path, monkeypatch):
    vit = timm_classifier()
    exp = load_experiment(_project(tmp_path, vit, name=NAME + "-gelu", hub=True))
    pair = load_models(exp)
    images = torch.randn(5, 3, 32, 32)
    # The zero-shot classifier as the paper defines it: normalised projected features times s·(normalised text).
    reference = build_zeroshot(pair.clip, exp.classnames, exp.templates)
    with torch.no_grad():
        assert torch.allclose(pair.finetuned(images), vit(images), atol=1e-5)  # α=1 is timm's forward
        zero_shot = reference(images)
        projected = reference.visual(images).norm(dim=-1, keepdim=True)
        ev = load_eval_set(exp.id_set, exp.classnames, exp.seed)
        scale = reference.visual(load_batch(ev, ev.order, pair.clip.preprocess)[0]).norm(dim=-1).mean()
        at_zero = pair.zeroshot(images)
        # α=0: the zero-shot logits times each image's projected-feature norm / c (c: their mean on the ID set)
        assert torch.allclose(at_zero, zero_shot * projected / scale, atol=1e-5)
        assert torch.equal(at_zero.argmax(1), zero_shot.argmax(1))
        space = WeightSpace(pair.zeroshot, pair.finetuned)
        assert torch.equal(space.set_alpha(0.0)(images), at_zero)
        assert torch.allclose(space.set_alpha(1.0)(images), vit(images), atol=1e-5)
        assert torch.allclose(space.set_alpha(0.5).head.bias, 0.5 * vit.head.bias)  # one flat lerp, bias with it
    assert "visual.proj" not in pair.finetuned.state_dict()
    assert "classifier head (*_ft_in1k)" in weight_help("finetuned")  # the Models page says it is taken
    assert pair.finetuned.state_dict().keys() == pair.zeroshot.state_dict().keys()
    assert any("to use timm's, give [zeroshot.preprocess] crop_pct = 0.9" in n for n in pair.notes)  # timm's crop
    assert any("mean norm of θ₀'s projected features over 6 images of ID" in n for n in pair.notes), pair.notes
    # c is measured once: the next load reads it from the cache, no image decoded
    monkeypatch.setattr("wiseft_explorer.core.timm_clip.load_batch", lambda *a: pytest.fail("c was measured again"))
    again = load_models(exp)
    assert again.notes == pair.notes and torch.equal(again.zeroshot.head.weight, pair.zeroshot.head.weight)


def test_the_sweep_of_a_timm_classifier_pair_scores_its_endpoints_as_they_are(tmp_path):
    vit = timm_classifier()
    runtime = ExperimentRuntime.from_path(_project(tmp_path, vit, name=NAME + "-gelu", hub=True))
    exp, pair = runtime.experiment, runtime.models
    ev = load_eval_set(exp.id_set, exp.classnames, exp.seed)
    images = load_batch(ev, range(len(ev)), pair.clip.preprocess)[0]
    reference = build_zeroshot(pair.clip, exp.classnames, exp.templates)
    with torch.no_grad():
        expected = {0.0: reference(images), 1.0: vit(images)}
    table = run_sweep(runtime, [0.0, 0.5, 1.0]).table()
    for alpha, logits in expected.items():
        assert table.loc[alpha, "ID"] == pytest.approx((logits.argmax(1) == ev.labels).float().mean().item())
    # the Gallery's open-vocabulary zero-shot scores θ₀'s CLIP features, whatever the classifier's layout
    top = zero_shot_with_extra(runtime, images[:1], ["purple star"])[0]
    ranked = [exp.classnames[i] for i in expected[0.0][0].argsort(descending=True)]
    assert "purple star" in top.classes and [c for c in top.classes if c != "purple star"] == ranked
    # θ_α's export says its layout; an open_clip file (θ₀'s projection beside θ_α's tower) would be wrong: refused
    with pytest.raises(ValueError, match="un-projected, un-normalised class token.*classifier format"):
        export_interpolated(runtime, 0.5, tmp_path / "clip.safetensors", "open_clip")
    assert load_checkpoint(export_interpolated(runtime, 0.5, tmp_path / "mid.safetensors"))[1]["recipe"]["wiseft"][
        "features"] == "token"


def test_crop_pct_gives_timms_own_eval_transform(tmp_path):
    vit = timm_classifier()
    toml = _project(tmp_path, vit, name=NAME + "-gelu", hub=True, preprocess="[zeroshot.preprocess]\ncrop_pct = 0.9")
    pair = load_models(load_experiment(toml))
    saved = json.loads((tmp_path / "ft" / "config.json").read_text())["pretrained_cfg"]  # as the Hub holds it
    timm_transform = create_transform(**resolve_data_config(pretrained_cfg=saved))  # resize 35 px, centre 32 px
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (57, 41, 3), dtype=np.uint8))
    assert torch.allclose(pair.clip.preprocess(picture), timm_transform(picture), atol=1e-6)
    assert not any("[zeroshot.preprocess]" in n for n in pair.notes)  # nothing left to match
    other = {"pretrained_cfg": {**saved, "mean": [0.123456789, 0.5, 0.5]}}  # named as timm has it, unrounded
    assert "mean = [0.123456789, 0.5, 0.5]" in str(preprocess_note(other, pair.clip, load_experiment(toml), "ft"))
    with pytest.raises(ExperimentError, match="crop_pct: expected a fraction in"):
        toml.write_text(toml.read_text().replace("crop_pct = 0.9", "crop_pct = 1.5"))
        load_experiment(toml)


def test_a_timm_classifier_saved_as_pytorch_model_bin_loads_the_same(tmp_path, monkeypatch):
    vit = timm_classifier()
    pair = load_models(load_experiment(_project(tmp_path, vit, name=NAME + "-gelu", hub="bin")))
    assert (tmp_path / "ft" / "pytorch_model.bin").is_file() and not (tmp_path / "ft" / "model.safetensors").exists()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pair.finetuned(images), vit(images), atol=1e-5)
    assert not pair.zeroshot.normalize  # the pair is in timm's layout
    # a .pt outside a timm folder is not read twice to find out (load_finetuned reads it once)
    (tmp_path / "other").mkdir()
    torch.save(pair.zeroshot.state_dict(), tmp_path / "other" / "ft.pt")
    monkeypatch.setattr("wiseft_explorer.core.timm_clip.load_checkpoint", lambda *a: pytest.fail("read twice"))
    assert not timm_classifier_head(tmp_path / "other" / "ft.pt", pair.clip)


def test_a_timm_head_for_other_classes_is_refused(tmp_path):
    toml = _project(tmp_path, timm_vit(num_classes=5))
    with pytest.raises(CheckpointError, match="head has 5 classes but the experiment names 3"):
        load_models(load_experiment(toml))


def test_a_gelu_timm_tower_against_a_quick_gelu_zero_shot_is_refused_with_a_fix_that_works(tmp_path):
    toml = _project(tmp_path, timm_vit(act="gelu"), arch="vit_tiny_clip_32")
    with pytest.raises(CheckpointError, match="timm runs vit_tiny_clip_32 with GELU.*QuickGELU.*model = .ViT-B-32."):
        load_models(load_experiment(toml))


def test_the_timm_tag_must_name_the_zero_shot_clip(tmp_path):
    exp = load_experiment(_project(tmp_path, timm_vit()))
    laion = dataclasses.replace(exp, zeroshot=ModelSpec("ViT-B-32", "laion2b_s34b_b79k"))
    note = check_tag_lineage("laion2b_ft_in1k", laion, "ft")  # open_clip's ViT-B-32 has two LAION-2B runs
    assert note is not None and "2 laion2b runs of ViT-B-32 (laion2b_e16, laion2b_s34b_b79k)" in note
    one_run = dataclasses.replace(exp, zeroshot=ModelSpec("ViT-B-16", "laion2b_s34b_b88k"))
    assert check_tag_lineage("laion2b_ft_in12k_in1k", one_run, "ft") is None
    assert check_tag_lineage("openai_ft_in1k", dataclasses.replace(laion, zeroshot=ModelSpec("ViT-B-32", "openai")),
                             "ft") is None
    with pytest.raises(CheckpointError, match="fine-tuned from openai CLIP .* open_clip's 'laion2b_s34b_b79k'"):
        check_tag_lineage("openai_ft_in1k", laion, "ft")
    note = check_tag_lineage("openai_ft_in1k", dataclasses.replace(laion, allow_other_zeroshot=True), "ft")
    assert note is not None and "used anyway" in note


def test_the_readmes_timm_snippet_is_the_gelu_pair_with_timms_crop():
    import tomllib

    from readme_walk import blocks, section

    from wiseft_explorer.experiment.preprocessing import parse_preprocess

    text = section("Your own models and data").split("### Checkpoints from Hugging Face `transformers` and timm")[1]
    timm = [tomllib.loads(b.text) for b in blocks(text) if b.lang == "toml" and "timm:" in b.text]
    assert len(timm) == 1 and timm[0]["finetuned"]["checkpoint"].endswith("openai_ft_in1k")
    assert "quickgelu" not in timm[0]["zeroshot"]["model"]  # timm runs the tower with GELU
    pp = parse_preprocess(timm[0]["zeroshot"]["preprocess"])
    assert pp is not None and pp.crop_pct == 0.9 and pp.tag == "openai"
