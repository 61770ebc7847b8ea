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
    config = FinetuneConfig(epochs=6, lr=3e-3, batch_size=32, warmup=2, bn="frozen", augment="none")
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
    frozen = finetune_end_to_end(zeroshot, data, FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, bn="frozen",
                                                                augment="none"), progress=False)
    for a, b in zip(_bn_stats(frozen.classifier), _bn_stats(zeroshot), strict=True):
        assert torch.equal(a, b)
    # The paper's model.train() is the default: BatchNorm statistics update.
    assert FinetuneConfig().bn == "train"
    trained = finetune_end_to_end(zeroshot, data, FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, augment="none"),
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
    config = FinetuneConfig(epochs=1, lr=1e-3, batch_size=32, seed=5, augment="none")
    a = finetune(zeroshot, data, config, progress=False).classifier.state_dict()
    b = finetune(zeroshot, data, config, progress=False).classifier.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_load_through_the_experiment_code(setup, tmp_path):
    tiny, clip, zeroshot, data = setup
    exp = load_experiment(tiny.toml)
    meta = classifier_metadata(clip, CLASSES, recipe={"data": "synthetic"})
    for mode in ("end-to-end", "linear"):
        config = FinetuneConfig(mode=mode, epochs=1, batch_size=32, seed=3, augment="none")
        result = finetune(zeroshot, data, config, progress=False)
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


def test_defaults_are_the_papers_imagenet_runs():
    """Batch 512 with lr 3e-5 (the paper's README command), BatchNorm updating (model.train()), the training transform;
    the CLI's defaults are the recipe's."""
    from wiseft_explorer.cli import build_parser

    config = FinetuneConfig()
    assert (config.batch_size, config.lr, config.epochs, config.warmup) == (512, 3e-5, 10, 500)
    assert (config.bn, config.augment, config.micro_batch) == ("train", "train", None)
    args = build_parser().parse_args(["finetune", "--train", "x", "--out", "y.safetensors"])
    assert (args.batch_size, args.lr, args.epochs, args.warmup, args.bn, args.augment, args.micro_batch) == \
        (512, None, 10, 500, "train", "train", None)  # --lr left out: the mode's paper's (3e-5; FLYP's 1e-5)


def test_training_transform_is_open_clips_and_its_crops_are_seeded_per_image(setup):
    """The transform derived from the eval one equals open_clip's own training transform for the model
    (RandomResizedCrop scale 0.9-1, bicubic); each image's crop depends on (seed, epoch, index) alone."""
    import open_clip
    from tiny import write_folder

    from wiseft_explorer.data import sets as data
    from wiseft_explorer.experiment import DatasetSpec
    from wiseft_explorer.training import AugmentedImages, train_transform, training_images

    tiny, clip, _, _ = setup
    _, open_clip_train, _ = open_clip.create_model_and_transforms(TINY_NAME)
    assert repr(train_transform(clip.preprocess)) == repr(open_clip_train)
    assert "scale=(0.9, 1.0)" in repr(open_clip_train) and "bicubic" in repr(open_clip_train)
    ev = data.load_eval_set(DatasetSpec("train", str(write_folder(tiny.root / "aug", 2, seed=3))), CLASSES)
    images, record = training_images(ev, clip.preprocess, FinetuneConfig(seed=4))
    assert isinstance(images, AugmentedImages) and record["train_transform"] == repr(open_clip_train)
    first = images[1][0]
    torch.manual_seed(99)
    state = torch.get_rng_state()
    assert torch.equal(images[1][0], first)  # whatever the global generator holds
    assert torch.equal(torch.get_rng_state(), state)  # and it is left as it was
    images.epoch = 1
    assert not torch.equal(images[1][0], first)  # a new crop every epoch
    plain = data.load_batch(ev, [1], clip.preprocess)[0][0]
    assert first.shape == plain.shape and not torch.equal(first, plain)
    evaluation, record = training_images(ev, clip.preprocess, FinetuneConfig(augment="none"))
    assert torch.equal(evaluation[1][0], plain) and "augment_seeding" not in record
    linear, _ = training_images(ev, clip.preprocess, FinetuneConfig(mode="linear"))  # features: the eval transform
    assert torch.equal(linear[1][0], plain)


def test_augment_train_refuses_data_it_cannot_augment(setup):
    _, _, zeroshot, data = setup
    with pytest.raises(ValueError, match="augment='none'"):
        finetune_end_to_end(zeroshot, data, FinetuneConfig(epochs=1, batch_size=32), progress=False)


def test_micro_batches_accumulate_to_the_whole_batchs_update(setup):
    """Batch 32 in micro-batches of 8 (and of 5: unequal parts) takes the steps of batch 32 at once, up to the order
    of float additions (3e-6 measured, on the attention pool's key bias, whose true gradient is 0 and which AdamW's
    normalisation turns into full-size steps of rounding noise; lr 1e-3 moves weights by 3e-3)."""
    _, _, zeroshot, data = setup
    recipe = {"epochs": 1, "lr": 1e-3, "batch_size": 32, "bn": "frozen", "augment": "none"}
    whole = finetune_end_to_end(zeroshot, data, FinetuneConfig(**recipe), progress=False)
    for micro in (8, 5):
        parts = finetune_end_to_end(zeroshot, data, FinetuneConfig(**recipe, micro_batch=micro), progress=False)
        assert parts.losses == pytest.approx(whole.losses, abs=1e-6)
        a, b = parts.classifier.state_dict(), whole.classifier.state_dict()
        assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=0) for k in a)
        assert parts.config.micro_batch == micro and parts.train_accuracy == whole.train_accuracy


def test_out_of_gpu_memory_names_micro_batch(setup, monkeypatch):
    _, _, zeroshot, data = setup

    def out_of_memory(self, images):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(type(zeroshot), "forward", out_of_memory)
    with pytest.raises(RuntimeError, match="--micro-batch 16") as info:
        finetune_end_to_end(zeroshot, data, FinetuneConfig(epochs=1, batch_size=32, augment="none"), progress=False)
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
