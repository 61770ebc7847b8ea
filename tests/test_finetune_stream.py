"""Fine-tuning streams: folders are read batch by batch, --limit samples every class, bad images are skipped."""

from __future__ import annotations

import argparse
import io

import numpy as np
import pytest
import torch
from libkit import cli_env, run_cli_parallel
from tiny import CLASSES, TEMPLATES, TINY_NAME, picture, write_folder
from torch.utils.data import Dataset, TensorDataset

from wiseft_explorer.cli import training as train_cli
from wiseft_explorer.core import ImageClassifier, build_zeroshot, load_checkpoint, load_clip
from wiseft_explorer.data import LabelledImages
from wiseft_explorer.data import sets as data
from wiseft_explorer.experiment import DatasetSpec, ModelSpec
from wiseft_explorer.training import FinetuneConfig, LoaderOptions, finetune, image_features
from wiseft_explorer.world import CLASSES as WORLD_CLASSES

QUICK = {"epochs": 2, "lr": 1e-3, "batch_size": 4, "warmup": 2, "seed": 3, "augment": "none"}


@pytest.fixture(scope="module")
def models(tiny):
    """The tiny experiment's open_clip model (with its eval transform) and zero-shot classifier."""
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    return clip, build_zeroshot(clip, CLASSES, TEMPLATES)


def _write_broken(path) -> None:
    """A PNG whose header is intact (the folder scan accepts it) but whose pixel data is cut short."""
    buffer = io.BytesIO()
    picture(CLASSES[0], np.random.default_rng(9)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def _run_finetune_cli(argv: list[str]) -> int:
    """`finetune` in this process (so that monkeypatches apply), through train_cli's own argument parser."""
    parser = argparse.ArgumentParser()
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--experiment")
    train_cli.add_parsers(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["finetune", *argv])
    return args.func(args)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.allclose(sa[k].float(), sb[k].float(), rtol=0, atol=1e-6) for k in sa)


def test_cli_finetune_on_a_folder_decodes_batch_by_batch(tiny, tmp_path, monkeypatch, capsys):
    """Images decoded but not yet trained on never exceed one batch (workers=0); the old whole-tensor path had 24."""
    folder = write_folder(tmp_path / "train", 8, seed=5)  # 24 images, 6 batches of 4
    decoded, consumed, in_flight = [0], [0], []
    real_decode, real_features = data.decode_image, ImageClassifier.features

    def counting_decode(*args, **kwargs):
        decoded[0] += 1
        return real_decode(*args, **kwargs)

    def counting_features(self, images):
        in_flight.append(decoded[0] - consumed[0])
        consumed[0] += len(images)
        return real_features(self, images)

    monkeypatch.setattr(data, "decode_image", counting_decode)
    monkeypatch.setattr(ImageClassifier, "features", counting_features)
    out = tmp_path / "ft.safetensors"
    assert _run_finetune_cli(["--experiment", str(tiny.toml), "--train", str(folder), "--out", str(out),
                              "--epochs", "2", "--batch-size", "4", "--warmup", "1", "--workers", "0"]) == 0
    assert len(in_flight) == 2 * 6 and max(in_flight) <= 4
    assert decoded[0] == 2 * 24  # every image read again each epoch: nothing kept the set
    _, meta = load_checkpoint(out)
    assert meta["recipe"]["images"] == 24 and meta["recipe"]["class_counts"] == [8, 8, 8]
    assert "wrote" in capsys.readouterr().out


def test_linear_features_stream_in_one_pass(tiny, models, monkeypatch):
    """Linear mode's feature pass decodes each image once, one batch at a time; only the features are kept."""
    clip, zeroshot = models
    ev = data.load_eval_set(DatasetSpec("id", str(tiny.id_dir)), CLASSES)
    decoded, in_flight = [0], []
    real_decode, real_features = data.decode_image, ImageClassifier.features

    def counting_decode(*args, **kwargs):
        decoded[0] += 1
        return real_decode(*args, **kwargs)

    def counting_features(self, images):
        in_flight.append(decoded[0] - 4 * len(in_flight))
        return real_features(self, images)

    monkeypatch.setattr(data, "decode_image", counting_decode)
    monkeypatch.setattr(ImageClassifier, "features", counting_features)
    feats, labels = image_features(zeroshot, LabelledImages(ev, clip.preprocess), batch_size=4)
    assert feats.shape[0] == len(ev) == decoded[0] and max(in_flight) <= 4
    assert torch.equal(labels, ev.labels)


@pytest.mark.parametrize("mode", ["end-to-end", "linear"])
def test_streaming_dataset_trains_as_in_memory_tensors(tiny, models, mode):
    """Same images, batch size and seed: a folder streamed through LabelledImages trains the tensors' weights."""
    clip, zeroshot = models
    ev = data.load_eval_set(DatasetSpec("id", str(tiny.id_dir)), CLASSES)
    config = FinetuneConfig(mode=mode, **QUICK)
    in_memory = finetune(zeroshot, (data.preprocess_set(ev, clip.preprocess), ev.labels), config, progress=False)
    streamed = finetune(zeroshot, LabelledImages(ev, clip.preprocess), config, progress=False,
                        loader=LoaderOptions(workers=0))
    assert streamed.losses == pytest.approx(in_memory.losses, abs=1e-6) and len(streamed.losses) == 2 * 4
    assert _same_weights(streamed.classifier, in_memory.classifier) and streamed.skipped == []
    assert not _same_weights(streamed.classifier, zeroshot)


def test_world_sets_stream_from_memory_as_tensors(models):
    """A `world:` set (pixels in memory) through LabelledImages trains as its preprocessed tensors."""
    clip, _ = models
    zeroshot = build_zeroshot(clip, WORLD_CLASSES, TEMPLATES)
    ev = data.load_eval_set(DatasetSpec("train", "world:train", limit=24), WORLD_CLASSES)
    config = FinetuneConfig(**QUICK)
    in_memory = finetune(zeroshot, (data.preprocess_set(ev, clip.preprocess), ev.labels), config, progress=False)
    streamed = finetune(zeroshot, LabelledImages(ev, clip.preprocess), config, progress=False)
    assert _same_weights(streamed.classifier, in_memory.classifier)


class _Holes(Dataset):
    """A tensor dataset in which some items failed to load (None), as LabelledImages gives for bad files."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, holes: set[int]) -> None:
        self.items, self.holes = TensorDataset(images, labels), holes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        return None if index in self.holes else self.items[index]


@pytest.mark.parametrize("mode", ["end-to-end", "linear"])
def test_items_that_failed_are_skipped_and_reported(models, mode):
    """A batch trains on the images that loaded; a batch with none is skipped; failed indices are reported."""
    _, zeroshot = models
    gen = torch.Generator().manual_seed(0)
    images, labels = torch.randn(12, 3, 32, 32, generator=gen), torch.arange(12) % 3
    holes = _Holes(images, labels, {3, 7})
    partial = finetune(zeroshot, holes, FinetuneConfig(mode=mode, **QUICK), progress=False)
    assert partial.skipped == [3, 7]
    if mode == "end-to-end":
        assert len(partial.losses) == 2 * 3  # batches of 4 that lost an image still trained
        single = finetune(zeroshot, holes, FinetuneConfig(**{**QUICK, "batch_size": 1, "bn": "frozen"}),
                          progress=False)  # BatchNorm cannot compute statistics of a single image
        assert len(single.losses) == 2 * 10 and single.skipped == [3, 7]  # the 2 empty batches a epoch skipped
    else:
        assert len(partial.losses) == 2 * 2  # the head trains on the 10 features that were computed
        kept = [i for i in range(12) if i not in (3, 7)]
        in_memory = finetune(zeroshot, (images[kept], labels[kept]), FinetuneConfig(mode=mode, **QUICK),
                             progress=False)
        assert _same_weights(partial.classifier, in_memory.classifier)
    with pytest.raises(ValueError, match="no training image"):
        finetune(zeroshot, _Holes(images, labels, set(range(12))), FinetuneConfig(mode=mode, **QUICK),
                 progress=False)


@pytest.fixture(scope="module")
def cli_runs(tiny, tmp_path_factory):
    """`finetune` subprocesses, run in parallel: --limit on a 3-class folder; a broken image with 1 and 0 workers."""
    root = tmp_path_factory.mktemp("ft-cli")
    sampled = write_folder(root / "sampled", 10, seed=7)  # 30 images in class order
    broken = write_folder(root / "broken", 3, seed=8)
    _write_broken(broken / CLASSES[1] / "cut.png")
    common = ["--experiment", str(tiny.toml), "--epochs", "2", "--batch-size", "4", "--warmup", "1"]
    commands = {
        "limit": ["finetune", *common, "--train", str(sampled), "--limit", "6", "--seed", "4", "--workers", "0",
                  "--out", str(root / "limit.safetensors")],
        "broken-1": ["finetune", *common, "--train", str(broken), "--workers", "1",
                     "--out", str(root / "broken-1.safetensors")],
        "broken-0": ["finetune", *common, "--train", str(broken), "--workers", "0",
                     "--out", str(root / "broken-0.safetensors")],
    }
    results = run_cli_parallel(commands, root, cli_env(), timeout=240)
    for result in results.values():
        assert result.returncode == 0, result.stderr
    return root, results


def test_cli_limit_draws_a_seeded_sample_of_every_class(cli_runs):
    """--limit 6 of 30 images in class order: 2 per class (the old first-6 took one class only), recorded."""
    root, results = cli_runs
    _, meta = load_checkpoint(root / "limit.safetensors")
    recipe = meta["recipe"]
    assert recipe["class_counts"] == [2, 2, 2] and recipe["images"] == 6 and recipe["limit"] == 6
    assert recipe["seed"] == 4 and "workers" not in recipe
    assert "training sample: 6 images" in results["limit"].stdout
    assert "red square 2, green circle 2, blue stripes 2" in results["limit"].stdout
    assert "warning" not in results["limit"].stderr


def test_cli_broken_image_is_skipped_with_one_warning_through_a_worker(cli_runs):
    """A truncated PNG is skipped with one warning naming it; training completes; workers do not change weights."""
    root, results = cli_runs
    for key in ("broken-1", "broken-0"):
        warnings = [line for line in results[key].stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1, results[key].stderr
        assert "1 training image(s) could not be decoded" in warnings[0] and "cut.png" in warnings[0]
        assert "truncated" in warnings[0]
        _, meta = load_checkpoint(root / f"{key}.safetensors")
        assert meta["recipe"]["undecodable"] == 1 and meta["recipe"]["images"] == 10
    one, _ = load_checkpoint(root / "broken-1.safetensors")
    zero, _ = load_checkpoint(root / "broken-0.safetensors")
    assert all(torch.equal(one[k], zero[k]) for k in one)
