"""The background sweep job: partial results with every alpha from the first batches, the direct sweep's numbers at the
end, errors reported; and the registry that gives each experiment one job."""

from __future__ import annotations

from pathlib import Path

import pytest
from libkit import shared_runtime, write_experiment

from wiseft_explorer.evaluation import (
    ExperimentRuntime,
    FinishedJob,
    JobStatus,
    SweepJob,
    SweepJobs,
    jobs,
    run_sweep,
    sweep_key,
)
from wiseft_explorer.experiment import load_experiment
from wiseft_explorer.results import ALPHA_GRID
from wiseft_explorer.store import DiskCache


def test_job_streams_every_alpha_at_once_and_ends_with_the_direct_sweep(tiny, tmp_path: Path, monkeypatch) -> None:
    runtime = shared_runtime(tiny)
    monkeypatch.setattr(jobs, "SNAPSHOT_SECONDS", 0.0)  # a partial result after every batch
    job = SweepJob(runtime, cache=DiskCache(tmp_path / "job-cache"))
    seen: list[JobStatus] = []
    original = job._on_progress

    def record(progress, snapshot) -> None:
        original(progress, snapshot)
        seen.append(job.status())

    job._on_progress = record
    status = job.start().wait(timeout=300)
    assert status.finished and status.error is None
    total = sum(len(runtime.eval_set(n)) for n in runtime.set_names)
    assert status.done == status.total == total
    partials = [s.result for s in seen if s.result is not None and not s.result.complete]
    assert partials, "no partial result was published while the sets streamed"
    # The first partial result already has every alpha of the grid for every set, on the first batch of each.
    first = partials[0]
    assert first.alphas == list(ALPHA_GRID)
    assert all(set(by) == set(ALPHA_GRID) for by in first.predictions.values())
    assert all(0 < n < total for n, total in first.counts.values())
    sizes = [s.images[0] for s in partials]
    assert sizes == sorted(sizes) and sizes[-1] < total
    assert "images" in seen[0].message and f"of {total} images" in seen[0].message
    direct = run_sweep(runtime, cache=DiskCache(tmp_path / "direct-cache"))
    assert status.result.complete and status.result.table().equals(direct.table())


def test_job_error_is_reported_not_raised(tiny, tmp_path: Path) -> None:
    exp = load_experiment(tiny.toml)
    broken = ExperimentRuntime(exp)
    (tmp_path / "empty.safetensors").write_bytes(b"")
    object.__setattr__(exp, "finetuned", tmp_path / "empty.safetensors")  # checkpoint damaged after validation
    status = SweepJob(broken, cache=DiskCache(tmp_path / "e")).start().wait(timeout=300)
    assert status.finished and status.result is None
    assert "empty" in str(status.error)
    with pytest.raises(ValueError):
        raise status.error


def test_the_registry_shares_one_job_per_experiment_then_serves_the_disk_cache(tiny, tmp_path: Path) -> None:
    toml = write_experiment(tmp_path, tiny)
    runtime = ExperimentRuntime.from_path(toml)
    registry = SweepJobs()
    job = registry.job(runtime)
    assert isinstance(job, SweepJob) and registry.job(runtime) is job
    other_session = ExperimentRuntime.from_path(toml)  # the same experiment, loaded again: the same sweep
    assert sweep_key(other_session) == sweep_key(runtime) and registry.job(other_session) is job
    status = job.wait(timeout=300)
    assert status.finished and status.error is None
    restarted = SweepJobs()  # e.g. a new server process: the complete sweep comes from the disk cache, no thread
    found = restarted.job(ExperimentRuntime.from_path(toml))
    assert isinstance(found, FinishedJob)
    assert found.status().finished and found.status().result.table().equals(status.result.table())


def test_the_registry_tells_experiments_apart_retries_failures_and_adopts_results(tiny, tmp_path: Path) -> None:
    runtime = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny))
    policy = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, name="b.toml", head_policy="zeroshot"))
    assert sweep_key(policy) != sweep_key(runtime)
    exp = load_experiment(write_experiment(tmp_path, tiny, name="broken.toml"))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    object.__setattr__(exp, "finetuned", tmp_path / "empty.safetensors")  # damaged after validation
    broken = ExperimentRuntime(exp)
    registry = SweepJobs()
    failed = registry.job(broken)
    assert failed.wait(timeout=300).error is not None
    again = registry.job(broken)
    assert again is not failed and isinstance(again, SweepJob)  # a failed sweep is tried again on the next visit
    again.wait(timeout=300)
    result = run_sweep(shared_runtime(tiny), [0.0, 1.0], cache=DiskCache(tmp_path / "adopted"))
    registry.adopt(broken, result)
    adopted = registry.job(broken)
    assert isinstance(adopted, FinishedJob) and adopted.status().result is result
