"""The streaming engine: fair order, `limit` samples, streaming equals in-memory, one decode per image, broken files,
and resuming an interrupted sweep (in the library, and after SIGKILL of the CLI)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from libkit import cli_env, in_memory_predictions, write_experiment
from tiny import CLASSES, write_folder

import wiseft_explorer.data.sets as data_module
import wiseft_explorer.evaluation.engine as engine_module
from wiseft_explorer.data import DataWarning, DecodeCounter, batch_plan, fair_order, fair_sample
from wiseft_explorer.evaluation import ExperimentRuntime, StateStore, StreamJob, run_sweep, stream_evaluate
from wiseft_explorer.evaluation.engine import FIRST_BATCH
from wiseft_explorer.experiment import load_experiment
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache

REPO = Path(__file__).resolve().parent.parent


def test_fair_order_prefixes_hold_the_classes_in_proportion():
    sizes = np.array([40, 30, 20, 6, 4])
    labels = np.repeat(np.arange(5), sizes)  # class order, as a folder scan lists them
    order = fair_order(labels, seed=0)
    assert sorted(order.tolist()) == list(range(100))
    assert set(labels[order[:5]].tolist()) == set(range(5))  # one of every class first
    for m in (10, 25, 50, 77, 100):
        counts = np.bincount(labels[order[:m]], minlength=5)
        share = m * sizes / sizes.sum()
        assert np.abs(counts - share).max() <= 2 and counts.min() >= 1, (m, counts, share)
    assert np.bincount(labels[:25], minlength=5).tolist() == [25, 0, 0, 0, 0]  # what a plain prefix would hold
    assert np.array_equal(fair_order(labels, 0), order) and not np.array_equal(fair_order(labels, 1), order)
    sample = fair_sample(labels, 10, seed=0)
    assert sample.tolist() == sorted(order[:10].tolist()) and len(set(labels[sample])) == 5
    assert fair_sample(labels, None).tolist() == list(range(100))


def test_batch_plan_gives_every_set_a_first_batch_then_keeps_them_level():
    plan = batch_plan([100, 10, 0, 40], batch_size=16, first=4)
    assert plan[:3] == [(0, 0, 4), (1, 0, 4), (3, 0, 4)]  # an empty set gets nothing
    for number, size in ((0, 100), (1, 10), (3, 40)):
        slices = [(start, stop) for n, start, stop in plan if n == number]
        assert slices[0][0] == 0 and slices[-1][1] == size  # each set's fair order, once, in order
        assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))
        assert all(stop - start <= 16 for start, stop in slices)
    # "Least far along first": the small sets finish long before the big one's last batch.
    assert max(i for i, (n, *_) in enumerate(plan) if n == 1) < max(i for i, (n, *_) in enumerate(plan) if n == 0)


def _folder_experiment(tmp_path: Path, tiny, per_class: int, *, limit: int | None = None, batch: int = 8,
                       workers: int = 0, seed: int = 0, extra: str = "") -> Path:
    folder = write_folder(tmp_path / "big", per_class, seed=7)
    toml = write_experiment(tmp_path, tiny, shifts=[])
    text = toml.read_text().replace('source = "' + str(tiny.id_dir) + '"', f'source = "{folder}"')
    text = text.replace("batch_size = 8", f"batch_size = {batch}\nworkers = {workers}\nseed = {seed}\n{extra}")
    if limit:
        text += f"limit = {limit}\n"
    toml.write_text(text)
    return toml


def test_limit_draws_a_seeded_sample_covering_every_class(tiny, tmp_path):
    toml = _folder_experiment(tmp_path, tiny, per_class=10, limit=6)
    runtime = ExperimentRuntime.from_path(toml)
    ev = runtime.eval_set("ID")
    assert len(ev) == 6 and np.bincount(ev.labels.numpy(), minlength=3).tolist() == [2, 2, 2]
    assert all(Path(p).is_file() for p in ev.paths)
    other = ExperimentRuntime(dataclasses.replace(runtime.experiment, seed=5))
    assert np.bincount(other.eval_set("ID").labels.numpy()).tolist() == [2, 2, 2]
    assert other.eval_set("ID").paths != ev.paths  # another seed, another sample, recorded in the set's key
    assert other.set_fingerprint("ID") != runtime.set_fingerprint("ID")
    result = run_sweep(runtime, [0.0, 1.0])
    assert result.seed == 0 and result.counts == {"ID": (6, 6)}


@pytest.mark.parametrize("workers", [0, 1])
def test_streaming_gives_the_in_memory_predictions(tiny, tmp_path, workers):
    exp = dataclasses.replace(load_experiment(tiny.toml), workers=workers, cache_dir=tmp_path / "cache")
    runtime = ExperimentRuntime(exp)
    alphas = [0.0, 0.3, 1.0] if workers else list(ALPHA_GRID)
    result = run_sweep(runtime, alphas)
    for (name, alpha), expected in in_memory_predictions(runtime, alphas).items():
        got = result.predictions[name][alpha]
        assert torch.equal(got.index, torch.arange(len(runtime.eval_set(name))))
        assert torch.equal(got.pred.long(), expected.pred), (name, alpha)
        assert got.top1 == expected.top1


def test_the_first_round_of_every_set_is_one_forward_per_alpha(tiny, tmp_path, monkeypatch):
    # The first round is a few images of every set; classified set by set, each alpha cost one small call per set.
    exp = dataclasses.replace(load_experiment(tiny.toml), cache_dir=tmp_path / "cache", batch_size=64)
    runtime = ExperimentRuntime(exp)
    calls: list[int] = []
    original = engine_module.predict_logits
    monkeypatch.setattr(engine_module, "predict_logits",
                        lambda model, batch, *a, **k: (calls.append(len(batch)), original(model, batch, *a, **k))[1])
    alphas = [0.0, 0.5, 1.0]
    result = run_sweep(runtime, alphas)
    first = sum(min(FIRST_BATCH, len(runtime.eval_set(name))) for name in runtime.set_names)
    assert len(runtime.set_names) == 3 and calls[:3] == [first] * 3  # one call per alpha for every set's first batch
    for (name, alpha), expected in in_memory_predictions(runtime, alphas).items():
        assert torch.equal(result.predictions[name][alpha].pred.long(), expected.pred), (name, alpha)


def test_every_image_is_decoded_once_for_all_alphas(tiny, tmp_path, monkeypatch):
    toml = _folder_experiment(tmp_path, tiny, per_class=10)
    runtime = ExperimentRuntime.from_path(toml)
    decoded = []
    original = data_module.decode_image
    monkeypatch.setattr(data_module, "decode_image", lambda path, *a, **k: (decoded.append(path), original(path))[1])
    counter = DecodeCounter()
    result = run_sweep(runtime, ALPHA_GRID, counter=counter)
    assert len(result.alphas) == 21 and result.complete
    assert counter.count == len(decoded) == 30 and len(set(decoded)) == 30  # N, not 21 N


def test_a_broken_file_in_a_large_folder_is_skipped_without_stopping_the_loader(tiny, tmp_path):
    toml = _folder_experiment(tmp_path, tiny, per_class=30, workers=1)
    good = (tmp_path / "big" / CLASSES[1] / "0.png").read_bytes()
    broken = tmp_path / "big" / CLASSES[1] / "zz-truncated.png"
    broken.write_bytes(good[: len(good) // 2])  # the header scan passes; decoding the pixels fails
    runtime = ExperimentRuntime.from_path(toml)
    assert len(runtime.eval_set("ID")) == 91
    with pytest.warns(DataWarning, match="skipped 1 unreadable file"):
        result = run_sweep(runtime, [0.0, 1.0])
    preds = result.predictions["ID"][1.0]
    assert result.complete and preds.n == 90 and preds.total == 91
    missing = set(range(91)) - set(preds.index.tolist())
    assert [runtime.eval_set("ID").paths[i] for i in missing] == [str(broken)]
    assert any("zz-truncated.png" in line for line in runtime.data_warnings())


def test_an_interrupted_stream_resumes_to_the_same_result(tiny, tmp_path):
    toml = _folder_experiment(tmp_path, tiny, per_class=12, batch=4)
    reference = run_sweep(ExperimentRuntime.from_path(toml), ALPHA_GRID, cache=DiskCache(tmp_path / "ref"))
    runtime = ExperimentRuntime.from_path(toml)
    job = StreamJob(runtime.space, runtime.new_working(), {"ID": runtime.eval_set("ID")}, {"ID": list(ALPHA_GRID)},
                    runtime.preprocess, len(CLASSES), runtime.device, batch_size=4)
    store = StateStore(DiskCache(tmp_path / "state"), "state-key", every=0.0)

    def crash_after_three(progress, streams) -> None:
        if progress.done >= 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_evaluate(job, store, crash_after_three)
    _, meta = store.cache.get_entry("state-key")
    assert meta["batches_done"] == 3 and meta["done"] == [12]  # the first batch of 4, then two more
    counter = DecodeCounter()
    streams = stream_evaluate(job, store, counter=counter)
    assert counter.count == 36 - 12  # only the rest is decoded
    stream = streams["ID"]
    for column, alpha in enumerate(ALPHA_GRID):
        expected = reference.predictions["ID"][alpha]
        order = torch.from_numpy(stream.ev.order)
        assert torch.equal(stream.pred[:, column][torch.argsort(order)], expected.pred), alpha


def _state_entries(cache: Path) -> list[Path]:
    """Entries in the cache's top folder: before a sweep finishes, only its partial state is written there."""
    return list(cache.glob("*.safetensors"))


def test_a_sigkilled_cli_sweep_resumes_and_ends_identical(tiny, tmp_path):
    toml = _folder_experiment(tmp_path, tiny, per_class=200, batch=4)
    env = {**cli_env(), "WISEFT_SAVE_SECONDS": "0"}  # save the partial state after every batch
    state_dir = Path(load_experiment(toml).cache_dir)  # the experiment's own cache folder
    args = [sys.executable, "-m", "wiseft_explorer", "sweep", "--experiment", str(toml), "--quiet"]
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "killed.jsonl")], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while not _state_entries(state_dir):
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no partial state was ever saved"
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed.jsonl").exists()
    states = _state_entries(state_dir)
    assert len(states) == 1
    _, meta = DiskCache(state_dir).get_entry(states[0].stem)
    assert 0 < meta["done"][0] < 600
    # Resume, and beside it the same sweep never interrupted, in a cache of its own.
    other = tmp_path / "other.toml"
    other.write_text(toml.read_text().replace(f'cache_dir = "{state_dir}"', f'cache_dir = "{tmp_path / "fresh"}"'))
    runs = {name: subprocess.Popen([*args[:5], str(path), "--quiet", "--out", str(tmp_path / f"{name}.jsonl")],
                                   cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, path in (("resumed", toml), ("straight", other))}
    outputs = {name: run.communicate(timeout=300) for name, run in runs.items()}
    assert all(run.returncode == 0 for run in runs.values()), outputs
    resumed_err = outputs["resumed"][1]
    assert f"resuming an interrupted sweep: {meta['done'][0]:,} of 600 images were done before" in resumed_err
    assert "resuming" not in outputs["straight"][1]
    assert states[0].stem not in {p.stem for p in _state_entries(state_dir)}  # the finished sweep removed its state
    rows = [json.loads(line) for line in (tmp_path / "resumed.jsonl").read_text().splitlines()]
    assert rows == [json.loads(line) for line in (tmp_path / "straight.jsonl").read_text().splitlines()]
    assert len(rows) == 21 and rows[0]["images"] == {"ID": 600}


STREAM_SLOWLY = """
import sys, time
from wiseft_explorer.evaluation.runtime import ExperimentRuntime
from wiseft_explorer.evaluation.sweep import run_sweep
def slow(progress, snapshot):
    print("batch", flush=True)
    time.sleep(0.5)
run_sweep(ExperimentRuntime.from_path(sys.argv[1]), [0.0, 1.0], on_progress=slow)
"""


def test_loader_workers_leave_when_their_process_is_killed(tiny, tmp_path):
    # Workers are children of the forkserver, not of the sweep's process: without a watchdog, a SIGKILLed app
    # server left its forkserver and workers running for good.
    import psutil

    toml = _folder_experiment(tmp_path, tiny, per_class=40, batch=4, workers=1)
    proc = subprocess.Popen([sys.executable, "-c", STREAM_SLOWLY, str(toml)], cwd=REPO, env=cli_env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "batch\n"
    helpers = psutil.Process(proc.pid).children(recursive=True)
    assert any("forkserver" in " ".join(p.cmdline()) for p in helpers) and len(helpers) >= 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(helpers, timeout=15)
    assert not alive, [p.cmdline()[-1][:80] for p in alive]


EXIT_MID_SWEEP = """
import sys, time
from wiseft_explorer.evaluation.jobs import SweepJob
from wiseft_explorer.evaluation.runtime import ExperimentRuntime
job = SweepJob(ExperimentRuntime.from_path(sys.argv[1])).start()  # a daemon thread, as in the app's server
while job.status().done == 0:
    time.sleep(0.05)
print("leaving while it streams", flush=True)
"""


def test_a_process_leaving_mid_sweep_exits_cleanly_and_keeps_the_state(tiny, tmp_path):
    toml = _folder_experiment(tmp_path, tiny, per_class=100, batch=4, workers=1)
    env = {**cli_env(), "WISEFT_SAVE_SECONDS": "1000"}  # only the stop at exit saves
    run = subprocess.run([sys.executable, "-c", EXIT_MID_SWEEP, str(toml)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])  # was 134: terminate called ...
    assert "leaving while it streams" in run.stdout and "terminate called" not in run.stderr
    states = _state_entries(Path(load_experiment(toml).cache_dir))
    assert len(states) == 1  # the stream stopped at a batch boundary and saved where it was
