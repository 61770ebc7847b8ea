"""Features once: a linear-classifier endpoint's sweep puts each image through the tower once, a second head over the
same data none at all, and the predictions are the full forward pass's, image for image, at every alpha."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from libkit import linear_checkpoint, write_experiment
from tiny import CLASSES, write_folder

from wiseft_explorer.core import (
    ImageClassifier,
    WeightSpace,
)
from wiseft_explorer.data import DecodeCounter
from wiseft_explorer.evaluation import (
    ExperimentRuntime,
    StateStore,
    StreamJob,
    analyse_images,
    feature_job,
    image_probabilities,
    run_sweep,
    set_example,
    stream_evaluate,
)
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache


def linear_experiment(root, tiny, seed: int, cache) -> Path:
    """The tiny experiment at a linear-classifier endpoint; decoding in-process (workers take seconds to start)."""
    toml = write_experiment(root, tiny, name=f"linear{seed}.toml", cache_dir=cache,
                            finetuned=linear_checkpoint(tiny, root / f"linear{seed}.safetensors", seed),
                            shifts=[{"name": "Dark", "source": str(tiny.shift_dir), "classes": CLASSES[:2]},
                                    {"name": "Same", "source": str(tiny.id_dir)}])
    toml.write_text(toml.read_text().replace("batch_size = 8", "batch_size = 8\nworkers = 0"))
    return toml


@pytest.fixture
def forwards(monkeypatch):
    """Images that went through an image tower (any classifier's), counted."""
    count = [0]
    original = ImageClassifier.features

    def counted(self, images):
        count[0] += len(images)
        return original(self, images)

    monkeypatch.setattr(ImageClassifier, "features", counted)
    return count


def full_forward(monkeypatch) -> None:
    """Today's path: every alpha through the whole classifier, as if the towers differed."""
    monkeypatch.setattr(WeightSpace, "shared_tower", property(lambda self: False))


def assert_same(ours, theirs) -> None:
    for kind in ("predictions", "ensemble_predictions"):
        a, b = getattr(ours, kind), getattr(theirs, kind)
        assert list(a) == list(b) and a
        for name in a:
            assert sorted(a[name]) == sorted(b[name]) == list(ALPHA_GRID)
            for alpha, p in a[name].items():
                q = b[name][alpha]
                assert torch.equal(p.index, q.index) and torch.equal(p.pred, q.pred), (kind, name, alpha)
                assert (p.probs is None) == (q.probs is None)
                assert p.probs is None or torch.equal(p.probs, q.probs)


def test_a_linear_endpoint_is_swept_with_one_forward_per_image_and_the_same_predictions(tiny, tmp_path, forwards,
                                                                                         monkeypatch):
    toml = linear_experiment(tmp_path, tiny, 1, tmp_path / "cache")
    runtime = ExperimentRuntime.from_path(toml)
    assert runtime.space.shared_tower and not ExperimentRuntime.from_path(tiny.toml).space.shared_tower
    images = sum(len(runtime.eval_set(n)) for n in runtime.set_names)
    ours = run_sweep(runtime)
    assert forwards[0] == images  # one forward per image for all 21 alphas and the ensemble
    with monkeypatch.context() as patch:
        full_forward(patch)
        forwards[0] = 0
        theirs = run_sweep(ExperimentRuntime.from_path(toml), cache=DiskCache(tmp_path / "full"))
        assert forwards[0] == images * len(ALPHA_GRID)
    assert_same(ours, theirs)

    # Another head over the same data (another seed): no forward, no decode, and the full path's predictions.
    second = linear_experiment(tmp_path, tiny, 2, tmp_path / "cache")
    forwards[0], counter = 0, DecodeCounter()
    again = run_sweep(ExperimentRuntime.from_path(second), counter=counter)
    assert forwards[0] == 0 and counter.count == 0
    with monkeypatch.context() as patch:
        full_forward(patch)
        assert_same(again, run_sweep(ExperimentRuntime.from_path(second), cache=DiskCache(tmp_path / "full2")))


def test_the_gallery_and_upload_use_the_features_once(tiny, tmp_path, forwards, monkeypatch):
    toml = linear_experiment(tmp_path, tiny, 1, tmp_path / "cache")
    runtime = ExperimentRuntime.from_path(toml)
    result = run_sweep(runtime, sets=["ID"])
    items = [set_example(runtime, "ID", i) for i in range(3)]
    forwards[0] = 0
    with runtime.borrow_working() as working:
        ours = analyse_images(runtime, working, items, 0.4)
    assert forwards[0] == 3  # the three models and 21 alphas: one forward per image
    result.predictions["ID"] = {a: p.__class__(**{**p.__dict__, "probs": None}) for a, p in
                                result.predictions["ID"].items()}  # as if the sweep had kept no probabilities
    forwards[0] = 0
    cached = image_probabilities(runtime, result, "ID", 0)
    assert forwards[0] == 0  # from the feature cache the sweep filled
    with monkeypatch.context() as patch:
        full_forward(patch)
        fresh = ExperimentRuntime.from_path(toml)
        with fresh.borrow_working() as working:
            theirs = analyse_images(fresh, working, [set_example(fresh, "ID", i) for i in range(3)], 0.4)
        full = image_probabilities(fresh, result, "ID", 0)
    for a, b in zip(ours, theirs, strict=True):
        assert {k: v.as_dict() for k, v in a.top.items()} == {k: v.as_dict() for k, v in b.top.items()}
        assert a.curve.equals(b.curve)
    torch.testing.assert_close(cached, full)  # the sweep's batch features vs this image alone: equal up to rounding
    assert torch.equal(cached.argmax(-1), full.argmax(-1))


def test_an_interrupted_features_stream_resumes_to_the_same_result(tiny, tmp_path, forwards):
    folder = write_folder(tmp_path / "big", 12, seed=7)
    toml = linear_experiment(tmp_path, tiny, 1, tmp_path / "cache")
    toml.write_text(toml.read_text().replace(f'"{tiny.id_dir}"', f'"{folder}"'))
    reference = run_sweep(ExperimentRuntime.from_path(toml), sets=["ID"], cache=DiskCache(tmp_path / "ref"))
    runtime = ExperimentRuntime.from_path(toml)
    working, cache = runtime.new_working(), DiskCache(tmp_path / "state")
    job = StreamJob(runtime.space, working, {"ID": runtime.eval_set("ID")}, {"ID": list(ALPHA_GRID)},
                    runtime.preprocess, len(CLASSES), runtime.device, batch_size=4,
                    features=feature_job(runtime, {"ID": ALPHA_GRID}, working.model, cache))
    store = StateStore(cache, "state-key", every=0.0)

    def crash(progress, streams) -> None:
        if progress.done >= 12:
            raise KeyboardInterrupt

    forwards[0] = 0
    with pytest.raises(KeyboardInterrupt):
        stream_evaluate(job, store, crash)
    streams = stream_evaluate(job, store)
    assert forwards[0] == 36  # the 12 done before the crash are not forwarded again
    stream = streams["ID"]
    order = torch.argsort(torch.from_numpy(stream.ev.order))
    for column, alpha in enumerate(ALPHA_GRID):
        assert torch.equal(stream.pred[:, column][order], reference.predictions["ID"][alpha].pred), alpha
