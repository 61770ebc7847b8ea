"""The preprocessing of file weights: an experiment names it ([zeroshot.preprocess]: a tag's config, explicit values),
the model's eval transform follows it exactly, the sidebar and CLI say which is in use, and the sweep key holds it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from tiny import TINY_NAME
from torchvision import transforms as T

from wiseft_explorer.cli import main
from wiseft_explorer.core import load_clip
from wiseft_explorer.evaluation import ExperimentRuntime
from wiseft_explorer.experiment import ExperimentError, ModelSpec, load_experiment
from wiseft_explorer.experiment.preprocessing import parse_preprocess
from wiseft_explorer.store import experiment_fingerprint

OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _picture() -> Image.Image:
    """A non-square image, so that squash and shortest-side resizing give different pixels."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))


def _reference(size: int, squash: bool, mean, std) -> T.Compose:
    """The eval transform written out from its definition (open_clip's image_transform, bicubic)."""
    resize = ([T.Resize((size, size), interpolation=T.InterpolationMode.BICUBIC)] if squash else
              [T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)])
    return T.Compose([*resize, T.ToTensor(), T.Normalize(mean, std)])


def _with_preprocess(tiny, table: str, name: str = "pp"):
    """A copy of the shared tiny experiment (next to it: its paths are relative) with a preprocess table."""
    path = tiny.root / f"{name}.toml"
    path.write_text(tiny.toml.read_text().replace("\n[finetuned]", f"\n{table}\n[finetuned]"))
    return load_experiment(path)


def test_a_file_without_a_tag_gets_openai_defaults_and_says_so(tiny):
    clip = load_clip(load_experiment(tiny.toml).zeroshot)
    expected = _reference(32, False, OPENAI_MEAN, OPENAI_STD)(_picture())
    assert torch.equal(clip.preprocess(_picture()), expected)
    assert "open_clip's defaults, OpenAI CLIP's" in clip.preprocess_note and "resize shortest" in clip.preprocess_note


def test_a_tags_preprocessing_is_taken_from_its_config(tiny):
    # SigLIP's webli weights: mean and std 0.5, the image squashed to a square (open_clip's metadata, no download).
    cfg = open_clip.get_pretrained_cfg("ViT-B-16-SigLIP", "webli")
    assert (cfg["mean"], cfg["std"], cfg["resize_mode"], cfg["interpolation"]) == ((0.5,) * 3, (0.5,) * 3, "squash",
                                                                                   "bicubic")
    exp = _with_preprocess(tiny, '[zeroshot.preprocess]\ntag = "webli"\nmodel = "ViT-B-16-SigLIP"\n')
    clip = load_clip(exp.zeroshot)
    assert torch.equal(clip.preprocess(_picture()), _reference(32, True, cfg["mean"], cfg["std"])(_picture()))
    assert clip.model.visual.preprocess_cfg["resize_mode"] == "squash"  # the training transform's source too
    assert "tag 'webli' of ViT-B-16-SigLIP" in clip.preprocess_note and "mean (0.5, 0.5, 0.5)" in clip.preprocess_note


def test_explicit_values_go_over_the_tags(tiny):
    exp = _with_preprocess(tiny, '[zeroshot.preprocess]\ntag = "webli"\nmodel = "ViT-B-16-SigLIP"\n'
                                 'mean = [0.1, 0.2, 0.3]\nresize_mode = "shortest"\n')
    clip = load_clip(exp.zeroshot)
    expected = _reference(32, False, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))(_picture())
    assert torch.equal(clip.preprocess(_picture()), expected)


def test_an_unknown_tag_is_refused_naming_the_known_ones(tiny):
    exp = _with_preprocess(tiny, '[zeroshot.preprocess]\ntag = "nope"\nmodel = "ViT-B-32"\n')
    with pytest.raises(RuntimeError, match="'nope' is not an open_clip pretrained tag of ViT-B-32.*openai"):
        load_clip(exp.zeroshot)


@pytest.mark.parametrize(("table", "message"), [
    ({"mean": [0.5, 0.5]}, "expected three numbers"), ({"std": [0.5, 0.0, 0.5]}, "above 0"),
    ({"size": 0}, "positive number"), ({"interpolation": "lanczos"}, "bicubic, bilinear"),
    ({"resize_mode": "fit"}, "shortest, longest, squash"), ({"model": "ViT-B-32"}, "add the tag"),
    ({}, "empty"), ({"colour": 1}, "unknown key 'colour'")])
def test_bad_preprocess_tables_are_named(table, message):
    with pytest.raises(ExperimentError, match=message):
        parse_preprocess(table)


def test_the_preprocessing_is_part_of_the_sweep_key_and_shown(tiny, capsys):
    plain = load_experiment(tiny.toml)
    exp = _with_preprocess(tiny, '[zeroshot.preprocess]\ntag = "webli"\nmodel = "ViT-B-16-SigLIP"\n', "shown")
    assert experiment_fingerprint(exp) != experiment_fingerprint(plain)
    other = dataclasses.replace(exp.zeroshot, preprocess=dataclasses.replace(exp.zeroshot.preprocess, size=40))
    assert experiment_fingerprint(dataclasses.replace(exp, zeroshot=other)) != experiment_fingerprint(exp)
    runtime = ExperimentRuntime(exp)
    assert runtime.preprocessing().startswith("from [zeroshot.preprocess]")  # before any model loads
    assert "squash" in runtime.describe()["preprocessing"]  # the sidebar's list, once loaded
    assert main(["info", "--experiment", str(exp.path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["preprocessing"].startswith("32 px, resize squash, bicubic, mean (0.5, 0.5, 0.5)")
    assert ModelSpec(TINY_NAME).preprocess is None
