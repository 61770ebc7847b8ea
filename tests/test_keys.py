"""Cache keys name content, not places: a set copied elsewhere (times kept) has the same key; a changed one does not."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil

import huggingface_hub.constants
import pytest

from wiseft_explorer.evaluation import ExperimentRuntime, entry_key, state_store, sweep_key
from wiseft_explorer.experiment import DatasetSpec, ModelSpec
from wiseft_explorer.results import ALPHA_GRID, curves_path
from wiseft_explorer.store import set_fingerprint, software_versions, zeroshot_identity


def test_a_folder_set_is_keyed_by_what_it_holds_wherever_it_lies(tmp_path):
    original = tmp_path / "data" / "val"
    (original / "cat").mkdir(parents=True)
    (original / "cat" / "1.png").write_bytes(b"x" * 10)
    (original / "dog").mkdir()
    (original / "dog" / "2.png").write_bytes(b"y" * 20)
    copy = shutil.copytree(original, tmp_path / "cluster" / "mnt" / "imagenet-val")  # copy2 keeps the times
    key = set_fingerprint(DatasetSpec("ID", str(original)))
    assert set_fingerprint(DatasetSpec("elsewhere", str(copy))) == key
    assert set_fingerprint(DatasetSpec("ID", str(original), limit=1)) != key
    assert set_fingerprint(DatasetSpec("ID", str(original), preset="imagenet")) != key
    (copy / "dog" / "2.png").write_bytes(b"z" * 21)  # another file: another key
    assert set_fingerprint(DatasetSpec("elsewhere", str(copy))) != key
    shutil.copy2(original / "dog" / "2.png", copy / "dog" / "2.png")
    os.utime(copy / "dog" / "2.png", ns=(1, 1))  # same size, other time: it may have changed, so another key
    assert set_fingerprint(DatasetSpec("elsewhere", str(copy))) != key
    assert set_fingerprint(DatasetSpec("w", "world:sketch")) != set_fingerprint(DatasetSpec("w", "world:cartoon"))


@pytest.fixture
def other_torch(monkeypatch):
    """The installed torch reads as another version (for as long as the test runs)."""
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0-other" if name == "torch" else real(name))
    software_versions.cache_clear()
    yield
    monkeypatch.undo()
    software_versions.cache_clear()


def test_every_sweep_key_names_the_libraries_that_compute_it(tiny, request):
    runtime = ExperimentRuntime.from_path(tiny.toml)
    keys = (entry_key(runtime, "ID", ALPHA_GRID, None), state_store(runtime, {"ID": [0.5]}, None, None).key,
            sweep_key(runtime), curves_path(runtime.experiment).name)
    assert {"torch", "open_clip_torch"} <= set(software_versions())
    request.getfixturevalue("other_torch")
    again = ExperimentRuntime.from_path(tiny.toml)  # sweep_key is kept per runtime
    other = (entry_key(again, "ID", ALPHA_GRID, None), state_store(again, {"ID": [0.5]}, None, None).key,
             sweep_key(again), curves_path(again.experiment).name)
    assert all(a != b for a, b in zip(keys, other, strict=True))


def test_a_sample_of_a_set_is_keyed_by_the_seed_that_drew_it(tiny):
    runtime = ExperimentRuntime.from_path(tiny.toml)
    reseeded = ExperimentRuntime(dataclasses.replace(runtime.experiment, seed=1))
    assert entry_key(runtime, "ID", [0.5], 4) != entry_key(reseeded, "ID", [0.5], 4)
    assert entry_key(runtime, "ID", [0.5], None) == entry_key(reseeded, "ID", [0.5], None)  # every image: same


def _hub_cache(root, commit: str) -> None:
    """A Hugging Face cache holding org/clip at `commit` (its default branch's ref and the config file)."""
    repo = root / "models--org--clip"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
    (repo / "snapshots" / commit / "open_clip_config.json").write_text("{}")


def test_a_hub_model_is_keyed_by_the_commit_it_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    for spec in (ModelSpec("ViT-B-32", "hf-hub:org/clip"), ModelSpec("hf-hub:org/clip")):
        unfetched = zeroshot_identity(spec)
        _hub_cache(tmp_path, "a" * 40)
        first = zeroshot_identity(spec)
        _hub_cache(tmp_path, "b" * 40)
        assert len({json.dumps(unfetched), json.dumps(first), json.dumps(zeroshot_identity(spec))}) == 3
        assert "hf-hub:org/clip@" + "b" * 40 in zeroshot_identity(spec).values()
        shutil.rmtree(tmp_path / "models--org--clip")


def test_loading_a_hub_model_reads_the_commit_its_key_names(tmp_path, monkeypatch):
    import open_clip.pretrained

    import wiseft_explorer.core.loading as loading

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    asked = []

    def download(repo, filename=None, revision=None):
        asked.append((filename, revision))
        _hub_cache(tmp_path, "c" * 40)  # the first download resolves the default branch and records it
        return str(tmp_path / "models--org--clip" / "snapshots" / ("c" * 40) / (filename or "model.safetensors"))

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf", download)
    monkeypatch.setattr(loading, "_load_from_dir", lambda folder, name: name)
    assert loading._load_from_hub("hf-hub:org/clip") == "hf-hub:org/clip"
    assert asked == [("open_clip_config.json", None), (None, "c" * 40)]  # weights of the commit just resolved
    _hub_cache(tmp_path, "d" * 40)  # fetched before: both files come from that commit
    asked.clear()
    loading._load_from_hub("hf-hub:org/clip")
    assert asked == [("open_clip_config.json", "d" * 40), (None, "d" * 40)]


def test_an_objectnet_set_named_by_its_images_is_keyed_by_the_sibling_mappings(tmp_path):
    root = tmp_path / "objectnet-1.0"
    (root / "images" / "alarm_clock").mkdir(parents=True)
    (root / "images" / "alarm_clock" / "1.png").write_bytes(b"x")
    (root / "mappings").mkdir()
    mapping = root / "mappings" / "folder_to_objectnet_label.json"
    mapping.write_text('{"alarm_clock": "Alarm clock"}')
    spec = DatasetSpec("ObjectNet", str(root / "images"), preset="objectnet")
    key = set_fingerprint(spec)
    mapping.write_text('{"alarm_clock": "Clock"}')  # other labels for the same images
    assert set_fingerprint(spec) != key


def test_a_fingerprint_difference_names_whole_classes_not_cut_strings():
    from wiseft_explorer.store import fingerprint_difference

    theirs = "|".join(["red square", "green circle", "blue stripes", "yellow stars"])
    ours = "|".join(["red square", "green circle", "blue stripes here"])
    text = fingerprint_difference("classes", theirs, ours)
    assert text == "classes differ: 'blue stripes', 'yellow stars' only there; 'blue stripes here' only here"
    many = fingerprint_difference("classes", "|".join(f"c{i}" for i in range(8)), "c0")
    assert many == "classes differ: 'c1', 'c2', 'c3' and 4 more only there"
    swapped = fingerprint_difference("templates", "a {}.|the {}.", "the {}.|a {}.")
    assert swapped == "the same templates in another order (template 1 is 'a {}.' there, 'the {}.' here)"
    assert fingerprint_difference("finetuned", "a" * 64, "b" * 64) == "the finetuned content differs (another file or version)"
    assert fingerprint_difference("precision", "fp16", "fp32") == "precision is 'fp16' there, 'fp32' here"
