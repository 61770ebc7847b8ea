"""Server memory (issue #13, item 12): working models pooled across sessions, runtimes within a memory budget,
exports not kept in the session."""

from __future__ import annotations

import gc
import json
import threading
from pathlib import Path

import open_clip
import psutil
import pytest
import torch
from libkit import shared_runtime, write_experiment
from tiny import CLASSES, TEMPLATES, fake_finetune

from wiseft_explorer.core import (
    build_zeroshot,
    classifier_metadata,
    load_checkpoint,
    load_clip,
    save_checkpoint,
)
from wiseft_explorer.data import release_memory
from wiseft_explorer.evaluation import WORKING_POOL, RuntimeRegistry, default_budget, export_bytes
from wiseft_explorer.experiment import ModelSpec

# A ViT of about 11 M parameters: a runtime holds it several times over (CLIP, both classifiers, the weight line:
# about 136 MB), enough for the process's memory to show whether evicted runtimes are really freed.
MID_NAME = "wiseft-test-mid-vit"
MID_CONFIG = {"embed_dim": 256, "vision_cfg": {"image_size": 32, "layers": 6, "width": 384, "patch_size": 8},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}}


def test_sessions_share_a_bounded_pool_of_working_models_each_at_its_own_alpha(tiny):
    runtime = shared_runtime(tiny)
    images = torch.rand(4, 3, 32, 32)
    expected = {}
    for alpha in (0.0, 0.3, 0.7, 1.0):
        with runtime.borrow_working() as working:
            expected[alpha] = runtime.classifier_at(working, alpha)(images)
    results, barrier, lock = {}, threading.Barrier(8), threading.Lock()

    def session(i: int) -> None:
        alpha = (0.0, 0.3, 0.7, 1.0)[i % 4]
        barrier.wait()
        for _ in range(5):
            with runtime.borrow_working() as working:
                out = runtime.classifier_at(working, alpha)(images)
            with lock:
                results.setdefault(i, []).append(torch.equal(out, expected[alpha]))

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 8 and all(all(r) for r in results.values())  # never another session's alpha
    assert runtime._pool_made <= WORKING_POOL  # eight sessions, at most two working models


def _mid_experiment(folder: Path, tiny, seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{MID_NAME}.json"
    config.write_text(json.dumps(MID_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(seed)
    zs_path = save_checkpoint(folder / "zeroshot.safetensors", open_clip.create_model(MID_NAME).state_dict())
    clip = load_clip(ModelSpec(MID_NAME, str(zs_path), config))
    ft = fake_finetune(build_zeroshot(clip, CLASSES, TEMPLATES), seed)
    ft_path = save_checkpoint(folder / "finetuned.safetensors", ft.state_dict(), classifier_metadata(clip, CLASSES))
    toml = write_experiment(folder, tiny, model=MID_NAME, pretrained=str(zs_path), config=False,
                            finetuned=ft_path, shifts=[])
    toml.write_text(toml.read_text().replace("[zeroshot]", f"[zeroshot]\nconfig = {json.dumps(str(config))}", 1))
    return toml


def _rss() -> int:
    gc.collect()
    release_memory()  # give freed pages back (glibc), so RSS shows what is really held
    return psutil.Process().memory_info().rss


def test_switching_experiments_keeps_the_models_within_the_budget(tiny, tmp_path):
    tomls = [_mid_experiment(tmp_path / f"e{i}", tiny, seed=i) for i in range(4)]
    probe = RuntimeRegistry(budget=2 ** 40)
    one = probe.get(str(tomls[0]), 0)
    one.load_models()
    size = one.memory_bytes()
    assert size > 100 * 2 ** 20
    del one, probe
    registry = RuntimeRegistry(budget=int(1.5 * size))  # room for one experiment, not two
    baseline = _rss()
    peaks = []
    for round_ in range(2):
        for toml in tomls:
            runtime = registry.get(str(toml), round_)  # a new file version each round: new runtimes
            runtime.load_models()
            evicted = registry.trim(keep=runtime)
            assert registry.memory() <= registry.budget and runtime in registry and len(registry) == 1
            del runtime, evicted
            peaks.append(_rss() - baseline)
    assert registry.evicted == 7
    # Eight experiments opened, each about `size`: held memory stays near one of them, not eight.
    assert max(peaks) < 3 * size, [p // 2 ** 20 for p in peaks]


def test_the_budget_comes_from_the_environment_or_half_the_ram(monkeypatch):
    monkeypatch.setenv("WISEFT_MODEL_BUDGET_GB", "1.5")
    assert default_budget() == int(1.5 * 2 ** 30)
    monkeypatch.delenv("WISEFT_MODEL_BUDGET_GB")
    assert default_budget() == int(psutil.virtual_memory().total * 0.5)
    monkeypatch.setenv("WISEFT_MODEL_BUDGET_GB", "lots")
    with pytest.raises(ValueError, match="expected a number of gigabytes"):
        default_budget()


def test_an_export_is_made_on_request_and_not_kept(tiny, tmp_path):
    runtime = shared_runtime(tiny)
    data = export_bytes(runtime, 0.5)
    (tmp_path / "x.safetensors").write_bytes(data)
    tensors, meta = load_checkpoint(tmp_path / "x.safetensors")
    assert meta["recipe"]["wiseft"]["alpha"] == 0.5 and "head.weight" in tensors
    assert not list(Path("/tmp").glob("wiseft-export-*"))  # the temporary file is gone
