"""Sweeps past one process: torchrun with gloo on CPU, 2 processes, tiny models; identical to one process, every image
counted once, a killed rank resumed, a failed rendezvous reported."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from libkit import cli_env, finetune_on_two_ranks_and_one, linear_checkpoint, set_images, write_experiment
from tiny import CLASSES, write_folder

from wiseft_explorer.core import process_group
from wiseft_explorer.data import batch_plan, shard_plan
from wiseft_explorer.evaluation import (
    ExperimentRuntime,
    plan_sweep,
    run_sweep,
    run_sweep_distributed,
    state_store,
    sweep_predictions,
    write_results,
)
from wiseft_explorer.evaluation.merging import with_method
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache

REPO = Path(__file__).resolve().parent.parent


def odd_experiment(root: Path, tiny, per_class: int) -> Path:
    """The tiny models on sets of odd sizes: ID 3 x per_class images, Dark 10, and Three (3 images: one batch, so
    one rank streams it and the other has none of it)."""
    odd = write_folder(root / "odd", per_class, seed=5)
    three = write_folder(root / "three", 1, seed=6)
    toml = write_experiment(root, tiny, shifts=[
        {"name": "Dark", "source": str(tiny.shift_dir), "classes": CLASSES[:2]}, {"name": "Three", "source": str(three)}])
    text = toml.read_text().replace(json.dumps(str(tiny.id_dir)), json.dumps(str(odd)))
    toml.write_text(text.replace("batch_size = 8", "batch_size = 4\nworkers = 0"))
    return toml


def reference(toml: Path, out: Path, method: str = "wiseft") -> Path:
    """The single-process sweep's files (along `method`'s path), computed here with one thread (as each torchrun
    process has)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # a cache of its own: the runs compared compute everything
        runtime = with_method(ExperimentRuntime.from_path(toml), method)
        write_results(runtime, run_sweep(runtime, cache=DiskCache(out.with_suffix(".cache"))), out)
    finally:
        torch.set_num_threads(saved)
    return out


def assert_same_results(got: Path, expected: Path) -> None:
    """Byte-identical JSONL, and every set's per-image predictions and probabilities equal."""
    assert got.read_text() == expected.read_text()
    ours, theirs = sweep_predictions(got.with_name(got.stem + ".per-image.safetensors")), \
        sweep_predictions(expected.with_name(expected.stem + ".per-image.safetensors"))
    assert list(ours) == list(theirs)
    for name in ours:
        for alpha, p in ours[name].items():
            q = theirs[name][alpha]
            assert torch.equal(p.index, q.index) and torch.equal(p.pred, q.pred) and torch.equal(p.probs, q.probs)
            assert torch.equal(p.index, torch.arange(p.total))  # every image once: none missing, none twice


@pytest.mark.parametrize("world", [2, 3])
def test_shards_cover_every_position_once_without_padding(world):
    sizes = [21, 10, 3, 0, 1]
    plan = batch_plan(sizes, batch_size=4, first=4)
    held = [[] for _ in sizes]
    for rank in range(world):
        local, positions, first = shard_plan(plan, len(sizes), rank, world)
        for number, start, stop in local:  # the local plan walks each part in order, batch by batch
            assert stop - start <= 4 and stop <= len(positions[number])
        assert sum(stop - start for _, start, stop in local) == sum(len(p) for p in positions)
        assert first == len(range(rank, 4, world))  # 4 non-empty sets: 4 first-round batches, dealt in turn
        for number, part in enumerate(positions):
            held[number].extend(part.tolist())
    for size, got in zip(sizes, held, strict=True):
        assert sorted(got) == list(range(size))  # disjoint and complete: no duplicate, no padding


@pytest.mark.parametrize("endpoint", ["end-to-end", "linear", "slerp"])
def test_torchrun_sweep_equals_one_process_and_counts_odd_sets_once(tiny, tmp_path, endpoint):
    """`slerp`: the end-to-end endpoint along a merge method's path (`sweep --method`), also over ranks."""
    toml = odd_experiment(tmp_path, tiny, per_class=7)
    if endpoint == "linear":  # a shared tower: each rank computes its images' features once, then the heads
        linear = linear_checkpoint(tiny, tmp_path / "linear.safetensors", seed=3)
        toml.write_text(toml.read_text().replace(json.dumps(str(tiny.finetuned)), json.dumps(str(linear))))
    method = "slerp" if endpoint == "slerp" else "wiseft"
    expected = reference(toml, tmp_path / "single.jsonl", method)
    out = tmp_path / "two.jsonl"
    env = cli_env() | {"WISEFT_DIST_TIMEOUT": "120"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "wiseft_explorer", "sweep", "--experiment", str(toml), "--quiet", "--out", str(out),
                          "--method", method],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("alpha choices") == 1  # rank 0 reports; rank 1 only computed its part
    runtime = with_method(ExperimentRuntime.from_path(toml), method)
    result, _, needed = plan_sweep(runtime, ALPHA_GRID, None, DiskCache(runtime.experiment.cache_dir), None)
    assert not needed and [p["world_size"] for p in result.provenance] == [2]  # computed by the two processes
    assert_same_results(out, expected)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["images"] == {"ID": 21, "Dark": 10, "Three": 3}


def _rank_main(rank: int, world: int, port: int, toml: str, out: str, kill_after: int) -> None:
    """One rank of a spawned job (torchrun's environment set by hand); rank 1 SIGKILLs itself after `kill_after`
    images of its part when asked, right after the engine saved its state."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), WISEFT_SAVE_SECONDS="0", WISEFT_DIST_TIMEOUT="60")
    torch.set_num_threads(1)
    runtime = ExperimentRuntime.from_path(toml)
    seen: list[int] = []

    def progress(p) -> None:
        if not seen:
            seen.append(p.done - p.processed_now)  # images this rank had done before a restart
            Path(out).with_name(f"resumed{rank}.json").write_text(json.dumps(seen[0]))
        if rank == 1 and kill_after and p.processed_now >= kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    with process_group("cpu") as group:
        result = run_sweep_distributed(runtime, group, on_progress=progress)
    if group.is_root:
        write_results(runtime, result, out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_rank_resumes_and_the_job_ends_identical(tiny, tmp_path):
    toml = odd_experiment(tmp_path, tiny, per_class=15)  # ID: 45 images, 12 batches of 4 (6 per rank)
    expected = reference(toml, tmp_path / "single.jsonl")
    out = tmp_path / "two.jsonl"
    with pytest.raises(mp.ProcessExitedException):
        mp.spawn(_rank_main, (2, _free_port(), str(toml), str(out), 8), nprocs=2)
    assert not out.exists()
    mp.spawn(_rank_main, (2, _free_port(), str(toml), str(out), 0), nprocs=2)
    assert json.loads((tmp_path / "resumed1.json").read_text()) >= 8  # rank 1 went on from its saved state
    assert_same_results(out, expected)
    runtime = ExperimentRuntime.from_path(toml)
    needed = {name: list(ALPHA_GRID) for name in runtime.set_names}
    cache = DiskCache(runtime.experiment.cache_dir)
    for rank in range(2):  # once rank 0 has written the results, every rank's saved part is gone
        assert state_store(runtime, needed, cache, None, (rank, 2)).key not in cache


def test_a_failed_rendezvous_says_so_and_exits_non_zero(tiny, tmp_path):
    env = cli_env() | {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(_free_port()), "WISEFT_DIST_TIMEOUT": "2"}
    run = subprocess.run([sys.executable, "-m", "wiseft_explorer", "sweep", "--experiment", str(tiny.toml), "--quiet"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("error: rank 1 of 2 could not join the process group at 127.0.0.1:"), last
    assert "--rdzv-endpoint" in last


def test_without_torchrun_the_sweep_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with process_group("cpu") as group:
        assert not group.distributed and group.is_root and group.backend is None


@pytest.mark.parametrize("mode", ["end-to-end", "linear"])
def test_ddp_finetuning_matches_one_process_at_the_same_global_batch(tiny, tmp_path, mode):
    """2 processes x 4 images per step, each in 2 micro-batches of 2 (gradient accumulation), against 1 x 8 at once:
    the same steps, so the same weights up to float summation order (stated tolerance: 1e-4 on every weight, 1e-5 on
    the loss) and the same top-1 within one image of 18. The default training transform crops each image alike in
    both; BatchNorm is frozen, since updating statistics normalise each process's share (and micro-batch) alone."""
    train = write_folder(tmp_path / "train", 16, seed=8)
    args = ["finetune", "--experiment", str(tiny.toml), "--train", str(train), "--mode", mode, "--epochs", "2",
            "--batch-size", "8", "--lr", "1e-3", "--warmup", "1", "--workers", "0", "--bn", "frozen"]
    two, (a, meta_a), (b, meta_b) = finetune_on_two_ranks_and_one(args, tmp_path, ("--micro-batch", "2"))
    assert two.stdout.count("wrote") == 1 and "2 processes" in two.stdout  # rank 0 alone writes and reports
    assert meta_a["recipe"]["world_size"] == 2 and meta_b["recipe"]["world_size"] == 1
    assert meta_a["recipe"]["batch_per_process"] == 4 and meta_a["recipe"]["micro_batch"] == 2
    assert [s["mode"] for s in meta_a.get("stages", [])] == (["linear", "end-to-end"] if mode == "lp-ft" else [])
    assert meta_a["recipe"]["augment"] == ("none" if mode == "linear" else "train")
    assert "RandomResizedCrop" in meta_a["recipe"]["train_transform"] or mode == "linear"
    assert a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4, rtol=0) for k in a)
    assert meta_a["recipe"]["final_loss"] == pytest.approx(meta_b["recipe"]["final_loss"], abs=1e-5)
    runtime = ExperimentRuntime.from_path(tiny.toml)
    images, labels = set_images(runtime, "ID"), runtime.eval_set("ID").labels
    right = []
    for state in (a, b):
        classifier = copy.deepcopy(runtime.models.zeroshot)
        classifier.load_state_dict(state, strict=mode != "linear")  # a linear checkpoint holds the head only
        with torch.no_grad():
            right.append(int((classifier(images).argmax(-1) == labels).sum()))
    assert abs(right[0] - right[1]) <= 1
