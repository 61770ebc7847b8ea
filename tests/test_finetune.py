"""Fine-tuning: the paper's recipe end-to-end and linear-classifier, BatchNorm choice, checkpoints in our format."""

from __future__ import annotations

import pytest
import torch
from tiny import CLASSES, TEMPLATES, TINY_NAME
from torch.utils.data import TensorDataset

from wiseft_explorer.core import (
    CLASSIFIER_FORMAT,
    build_zeroshot,
    classifier_metadata,
    load_checkpoint,
    load_clip,
    load_finetuned,
)
from wiseft_explorer.experiment import ModelSpec, load_experiment
from wiseft_explorer.training import (
    FinetuneConfig,
    finetune,
    finetune_end_to_end,
    finetune_linear,
    save_finetuned,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny zero-shot classifier and a learnable 3-class task (class = dominant colour channel)."""
    from tiny import make_tiny

    tiny = make_tiny(tmp_path_factory.mktemp("ft"))
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    zeroshot = build_zeroshot(clip, CLASSES, TEMPLATES)
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(96) % 3
    images = torch.randn(96, 3, 32, 32, generator=gen) * 0.3
    images[torch.arange(96), labels] += 1.5
    return tiny, clip, zeroshot, (images, labels)


def _accuracy(model, data) -> float:
    images, labels = data
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


def _bn_stats(model) -> list[torch.Tensor]:
    return [v.clone() for k, v in model.state_dict().items() if "running_" in k]


def test_end_to_end_learns_and_leaves_the_zero_shot_model_alone(setup):
    _, _, zeroshot, data = setup
    before = {k: v.clone() for k, v in zeroshot.state_dict().items()}
    steps = []
    config = FinetuneConfig(epochs=6, lr=3e-3, batch_size=32, warmup=2)
    result = finetune_end_to_end(zeroshot, data, config, progress=False, callback=lambda s, t, loss: steps.append(t))
    assert _accuracy(result.classifier, data) > max(0.6, _accuracy(zeroshot, data))
    assert len(steps) == 6 * 3 and steps[0] == 18 and len(result.losses) == 18
    assert sum(result.losses[-3:]) < sum(result.losses[:3])
    for key, value in zeroshot.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not result.classifier.training and not any(p.requires_grad for p in result.classifier.parameters())
    # The head started from the zero-shot head and the tower moved too.
    assert not torch.equal(result.classifier.head.weight, zeroshot.head.weight)
    assert not torch.equal(result.classifier.visual.conv1.weight, zeroshot.visual.conv1.weight)


def test_batchnorm_frozen_keeps_running_stats_and_train_updates_them(setup):
    _, _, zeroshot, data = setup
    frozen = finetune_end_to_end(zeroshot, data, FinetuneConfig(epochs=1, lr=1e-3, batch_size=32), progress=False)
    for a, b in zip(_bn_stats(frozen.classifier), _bn_stats(zeroshot), strict=True):
        assert torch.equal(a, b)
    trained = finetune_end_to_end(zeroshot, data, FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, bn="train"),
                                  progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(_bn_stats(trained.classifier), _bn_stats(zeroshot), strict=True))


def test_linear_trains_only_the_head(setup):
    _, _, zeroshot, data = setup
    result = finetune_linear(zeroshot, TensorDataset(*data), FinetuneConfig(mode="linear", epochs=20, lr=1e-2,
                                                                            batch_size=32, warmup=2), progress=False)
    for key, value in zeroshot.state_dict().items():
        if key.startswith("visual."):
            assert torch.equal(result.classifier.state_dict()[key], value), key
    assert not torch.equal(result.classifier.head.weight, zeroshot.head.weight)
    assert result.config.mode == "linear"
    assert sum(result.losses[-3:]) < sum(result.losses[:3])


def test_deterministic_for_a_seed(setup):
    _, _, zeroshot, data = setup
    config = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, seed=5)
    a = finetune(zeroshot, data, config, progress=False).classifier.state_dict()
    b = finetune(zeroshot, data, config, progress=False).classifier.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_load_through_the_experiment_code(setup, tmp_path):
    tiny, clip, zeroshot, data = setup
    exp = load_experiment(tiny.toml)
    meta = classifier_metadata(clip, CLASSES, recipe={"data": "synthetic"})
    for mode in ("end-to-end", "linear"):
        result = finetune(zeroshot, data, FinetuneConfig(mode=mode, epochs=1, batch_size=32, seed=3), progress=False)
        path = save_finetuned(tmp_path / f"{mode}.safetensors", result, meta)
        tensors, metadata = load_checkpoint(path)
        assert metadata["format"] == CLASSIFIER_FORMAT and metadata["seed"] == 3
        assert metadata["recipe"]["mode"] == mode and metadata["recipe"]["data"] == "synthetic"
        assert metadata["recipe"]["weight_decay"] == 0.1 and metadata["recipe"]["grad_clip"] == 1.0
        assert metadata["classnames"] == CLASSES
        assert any(k.startswith("visual.") for k in tensors) == (mode == "end-to-end")
        loaded, _ = load_finetuned(path, zeroshot, clip, exp)
        for key, value in result.classifier.state_dict().items():
            assert torch.allclose(loaded.state_dict()[key], value), key


def test_config_validation():
    with pytest.raises(ValueError, match="mode"):
        FinetuneConfig(mode="partial")
    with pytest.raises(ValueError, match="bn"):
        FinetuneConfig(bn="sometimes")
