"""Evaluation sets: unreadable folder files skipped and reported, subsets and limits respected, fast world preprocessing."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
import torch
from libkit import write_experiment

from wiseft_explorer.data import DataWarning
from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.experiment import ExperimentError


def test_unreadable_files_are_skipped_counted_and_reported(tiny, tmp_path: Path) -> None:
    folder = tmp_path / "id"
    shutil.copytree(tiny.id_dir, folder)
    cls = sorted(p.name for p in folder.iterdir())[0]
    good = len(list(folder.rglob("*.png")))
    (folder / cls / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / cls / "empty.jpg").write_bytes(b"")
    toml = write_experiment(tmp_path, tiny, shifts=[{"name": "Copy", "source": str(folder)}])
    runtime = ExperimentRuntime.from_path(toml)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = runtime.eval_set("Copy")
    assert len(ev) == good
    assert {Path(p).name for p, _ in ev.skipped} == {"broken.png", "empty.jpg"}
    assert any(issubclass(w.category, DataWarning) and "skipped 2" in str(w.message) for w in caught)
    (line,) = runtime.data_warnings()
    assert line.startswith("Copy: skipped 2 unreadable file(s)")
    result = run_sweep(runtime, [0.0, 1.0], cache=None)  # the rest of the set still evaluates
    assert 0.0 <= result.top1("Copy", 1.0) <= 1.0


def test_empty_class_folder_is_named(tiny, tmp_path: Path) -> None:
    folder = tmp_path / "id"
    shutil.copytree(tiny.id_dir, folder)
    victim = sorted(p for p in folder.iterdir())[1]
    for f in victim.iterdir():
        f.unlink()
    toml = write_experiment(tmp_path, tiny, shifts=[{"name": "Holey", "source": str(folder)}])
    with pytest.raises((ExperimentError, ValueError), match=victim.name):
        ExperimentRuntime.from_path(toml).eval_set("Holey")


def test_world_set_fingerprint_follows_the_set_size(tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    from wiseft_explorer.experiment import DEFAULT_EXPERIMENT, load_experiment
    from wiseft_explorer.world import sets as world_sets

    runtime = ExperimentRuntime(load_experiment(DEFAULT_EXPERIMENT))
    name = runtime.experiment.id_set.name
    before = runtime.set_fingerprint(name)
    source = runtime.experiment.id_set.source.removeprefix("world:")
    smaller = dataclasses.replace(world_sets.SPECS[source], size=world_sets.SPECS[source].size - 1)
    monkeypatch.setitem(world_sets.SPECS, source, smaller)
    # A new runtime (a new start) sees the new size: a cached sweep of the old size is never reused.
    assert ExperimentRuntime(runtime.experiment).set_fingerprint(name) != before
    assert runtime.set_fingerprint(name) == before  # the old runtime keeps the identity of the set it indexed


def test_world_sets_batch_preprocessing_is_bit_identical_to_the_per_image_transform():
    from open_clip.transform import image_transform
    from PIL import Image

    from wiseft_explorer.data import preprocess_images
    from wiseft_explorer.data.sets import _batch_preprocess
    from wiseft_explorer.world import make_set

    raw = make_set("cartoon", seed=0, n=40).images  # 32 x 32
    same_size = image_transform(32, is_train=False)
    batched = _batch_preprocess(raw, same_size)
    assert batched is not None
    assert torch.equal(batched, preprocess_images([Image.fromarray(a) for a in raw], same_size))
    # Any resize or crop that would change the pixels takes the per-image path.
    assert _batch_preprocess(raw, image_transform(48, is_train=False)) is None
    assert _batch_preprocess(raw[:, :, :30], same_size) is None
