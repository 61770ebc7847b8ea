"""The background sweep job: partial results with every alpha from the first batches, the direct sweep's numbers at the end, errors reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from libkit import shared_runtime

from wiseft_explorer.evaluation import ExperimentRuntime, JobStatus, SweepJob, jobs, run_sweep
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
