"""FLYP: CLIP's loss, both towers fine-tuned and saved, θ_α's head from the interpolated text tower, CLI and torchrun."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from libkit import finetune_on_two_ranks_and_one, write_experiment
from tiny import CLASSES, TEMPLATES, TINY_NAME, write_folder

from wiseft_explorer.cli import main as cli_main
from wiseft_explorer.core import load_checkpoint, load_clip, zero_shot_head
from wiseft_explorer.evaluation import ExperimentRuntime
from wiseft_explorer.experiment import ModelSpec
from wiseft_explorer.training import FinetuneConfig

ALPHA = 0.3


def test_clip_loss_is_clips_symmetric_cross_entropy_written_out():
    from wiseft_explorer.training import clip_loss

    gen = torch.Generator().manual_seed(0)
    image = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=-1)
    text = torch.nn.functional.normalize(torch.randn(5, 4, generator=gen), dim=-1)
    scale = torch.tensor(7.5)
    # CLIP's definition: logits[i, j] = scale * <image_i, text_j>; caption i belongs to image i; the mean of the
    # image->text and text->image cross-entropies.
    logits = [[float(scale * (image[i] * text[j]).sum()) for j in range(5)] for i in range(5)]

    def cross_entropy(rows):
        return sum(torch.logsumexp(torch.tensor(row), 0).item() - row[i] for i, row in enumerate(rows)) / len(rows)

    columns = [[logits[i][j] for i in range(5)] for j in range(5)]
    expected = (cross_entropy(logits) + cross_entropy(columns)) / 2
    assert clip_loss(image, text, scale).item() == pytest.approx(expected, abs=1e-5)


@pytest.fixture(scope="module")
def flyp(tiny, tmp_path_factory):
    """A FLYP run on the tiny model (a learnable 3-class task), saved, and an experiment that reads it."""
    from wiseft_explorer.core import classifier_metadata
    from wiseft_explorer.training import finetune_flyp, save_flyp

    root = tmp_path_factory.mktemp("flyp")
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(48) % 3
    images = torch.randn(48, 3, 32, 32, generator=gen) * 0.3
    images[torch.arange(48), labels] += 1.5
    config = FinetuneConfig(mode="flyp", epochs=2, batch_size=16, lr=1e-3, warmup=1, augment="none")
    result = finetune_flyp(clip.model, clip.tokenizer, CLASSES, TEMPLATES, (images, labels), config, progress=False)
    assert all(torch.equal(v, clip.model.state_dict()[k]) for k, v in before.items())  # the input is left alone
    path = save_flyp(root / "flyp.safetensors", result, classifier_metadata(clip, CLASSES))
    return clip, result, path, write_experiment(root, tiny, finetuned=path, head_policy="auto")


def test_flyp_trains_both_towers_and_saves_them(flyp):
    clip, result, path, _ = flyp
    tensors, meta = load_checkpoint(path)
    zs = clip.model.state_dict()
    assert meta["recipe"]["mode"] == "flyp" and meta["recipe"]["lr"] == 1e-3 and "captions" in meta["recipe"]
    assert meta["text_tower"] == "text_tower." and len(result.losses) == 2 * 3
    for key in ("text_tower.token_embedding.weight", "text_tower.logit_scale", "visual.conv1.weight"):
        name = key.removeprefix("text_tower.")
        assert not torch.equal(tensors[key], zs[name]), f"{key} did not train"


def test_the_checkpoint_loads_as_an_endpoint_whose_head_is_its_text_towers(flyp):
    clip, _, path, toml = flyp
    runtime = ExperimentRuntime.from_path(toml)
    pair = runtime.models
    tensors, _ = load_checkpoint(path)
    text = {k.removeprefix("text_tower."): v for k, v in tensors.items() if k.startswith("text_tower.")}
    model = copy.deepcopy(clip.model)
    model.load_state_dict({**{k: v for k, v in model.state_dict().items() if k.startswith("visual.")}, **text})
    head = zero_shot_head(model, clip.tokenizer, CLASSES, TEMPLATES)
    assert torch.allclose(pair.finetuned.head.weight, head.weight, atol=1e-6)
    assert pair.finetuned_text is not None and torch.equal(pair.finetuned_text["logit_scale"], text["logit_scale"])
    assert runtime.space.head_policy == "text" and runtime.fingerprint["head_policy"] == "text"


def _hand_lerped_head(clip, finetuned_text: dict, alpha: float) -> torch.Tensor:
    model = copy.deepcopy(clip.model)
    state = model.state_dict()
    for key, value in finetuned_text.items():
        if value.is_floating_point():
            state[key] = (1 - alpha) * state[key] + alpha * value
    model.load_state_dict(state)
    return zero_shot_head(model, clip.tokenizer, CLASSES, TEMPLATES).weight


def test_theta_alpha_head_is_the_interpolated_text_towers_head(flyp):
    clip, _, _, toml = flyp
    runtime = ExperimentRuntime.from_path(toml)
    space, pair = runtime.space, runtime.models
    expected = _hand_lerped_head(clip, pair.finetuned_text, ALPHA)
    working = runtime.new_working()
    assert torch.allclose(runtime.classifier_at(working, ALPHA).head.weight, expected, atol=1e-5)
    assert torch.allclose(space.head_at(ALPHA)[0], expected, atol=1e-5)
    # The endpoints: the zero-shot head at 0 and the checkpoint's head at 1 (bit for bit), which are the heads of
    # text₀ and text₁.
    assert torch.equal(runtime.classifier_at(working, 0.0).head.weight, pair.zeroshot.head.weight)
    assert torch.equal(runtime.classifier_at(working, 1.0).head.weight, pair.finetuned.head.weight)
    assert torch.allclose(_hand_lerped_head(clip, pair.finetuned_text, 1.0), pair.finetuned.head.weight, atol=1e-5)
    # The image tower stays one flat lerp.
    for (key, a), b, c in zip(runtime.classifier_at(working, ALPHA).visual.state_dict().items(),
                              pair.zeroshot.visual.state_dict().values(), pair.finetuned.visual.state_dict().values(),
                              strict=True):
        if a.is_floating_point():
            assert torch.allclose(a, torch.lerp(b, c, ALPHA), atol=1e-6), key
    built = space.text.built
    runtime.classifier_at(runtime.new_working(), ALPHA)  # a second working model at the same alpha: no new head
    assert space.text.built == built


def test_a_sweep_builds_one_text_head_per_alpha_and_matches_the_heads_in_memory(flyp, tmp_path):
    """The streaming sweep over three sets and many batches runs the text tower once per α (heads kept per α), and
    its accuracies are those of θ_α's classifier (with its text-tower head) scored in memory."""
    from libkit import in_memory_predictions

    from wiseft_explorer.evaluation import run_sweep
    from wiseft_explorer.store import DiskCache

    _, _, _, toml = flyp
    runtime = ExperimentRuntime.from_path(toml)
    alphas = (0.0, ALPHA, 1.0)
    result = run_sweep(runtime, alphas, cache=DiskCache(tmp_path / "c"), resume=False)
    assert runtime.space.text.built == 1  # α = 0 and 1: the towers are the endpoints', whose heads are stored
    reference = in_memory_predictions(runtime, alphas)
    for (name, alpha), expected in reference.items():
        got = result.predictions[name][alpha]
        assert torch.equal(got.pred.long(), expected.pred) and got.top1 == expected.top1, (name, alpha)


def test_interpolate_stays_selectable_as_the_heads_lerp(flyp, tmp_path, tiny):
    clip, _, path, _ = flyp
    runtime = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, finetuned=path, head_policy="interpolate"))
    pair = runtime.models
    lerped = torch.lerp(pair.zeroshot.head.weight, pair.finetuned.head.weight, ALPHA)
    head = runtime.classifier_at(runtime.new_working(), ALPHA).head.weight
    assert torch.allclose(head, lerped, atol=1e-6)
    assert not torch.allclose(head, _hand_lerped_head(clip, pair.finetuned_text, ALPHA), atol=1e-4)
    assert runtime.fingerprint["head_policy"] == "interpolate"
    text = ExperimentRuntime.from_path(flyp[3])
    text.classifier_at(text.new_working(), ALPHA)
    # The text tower's working copy and heads count in a runtime's memory (the budget that drops experiments).
    assert text.memory_bytes() > runtime.memory_bytes()


def test_auto_keys_a_plain_endpoint_as_interpolate_and_text_needs_a_text_tower(tiny, tmp_path):
    auto = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, name="a.toml", head_policy="auto"))
    assert auto.fingerprint["head_policy"] == "interpolate" and auto.space.text is None
    text = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, name="t.toml", head_policy="text"))
    with pytest.raises(Exception, match="carries no text tower.*interpolate"):
        _ = text.space


def test_cli_finetune_flyp_writes_a_checkpoint_sweep_accepts(tiny, tmp_path, capsys):
    train = write_folder(tmp_path / "train", 4, seed=9)
    out = tmp_path / "flyp.safetensors"
    assert cli_main(["finetune", "--experiment", str(tiny.toml), "--train", str(train), "--mode", "flyp",
                     "--epochs", "1", "--batch-size", "6", "--warmup", "1", "--workers", "0", "--out", str(out)]) == 0
    _, meta = load_checkpoint(out)
    assert meta["recipe"]["lr"] == 1e-5 and meta["recipe"]["grad_clip"] == float("inf")  # FLYP's defaults
    assert "RandomResizedCrop" in meta["recipe"]["train_transform"]
    toml = write_experiment(tmp_path, tiny, finetuned=out, head_policy="auto")
    capsys.readouterr()
    assert cli_main(["sweep", "--experiment", str(toml), "--alpha", str(ALPHA), "--out", str(tmp_path / "r.jsonl"),
                     "--quiet"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rows and all(0 <= row["ID"] <= 1 for row in rows if "ID" in row)


def test_torchrun_flyp_matches_one_process(tiny, tmp_path):
    """2 processes x 3 images per step against 1 x 6: the features are all-gathered before the loss, so every
    caption of the global batch is a negative for every image, and the weights agree up to float summation order
    (1e-4 on every weight but the attention key biases, 1e-5 on the loss)."""
    train = write_folder(tmp_path / "train", 4, seed=8)
    args = ["finetune", "--experiment", str(tiny.toml), "--train", str(train), "--mode", "flyp", "--epochs", "2",
            "--batch-size", "6", "--lr", "1e-3", "--warmup", "1", "--workers", "0", "--bn", "frozen"]
    two, (a, meta_a), (b, meta_b) = finetune_on_two_ranks_and_one(args, tmp_path)
    assert meta_a["recipe"]["world_size"] == 2 and meta_a["recipe"]["batch_per_process"] == 3
    assert meta_a["recipe"]["final_loss"] == pytest.approx(meta_b["recipe"]["final_loss"], abs=1e-5)
    assert meta_a["recipe"]["train_accuracy"] == meta_b["recipe"]["train_accuracy"]
    assert a.keys() == b.keys()
    # Attention key biases have no gradient in exact arithmetic (q.b_k is the same for every key, and softmax drops
    # it): their gradients are float noise, which Adam scales to whole steps, so they are left out.
    keys = [k for k in a if not k.endswith(("attn.in_proj_bias", "k_proj.bias"))]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4, rtol=0) for k in keys)
