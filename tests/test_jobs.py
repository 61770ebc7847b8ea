"""The background sweep job: same numbers as a direct sweep, partial results coarse-first, errors reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from libkit import shared_runtime

from wiseft_explorer.cache import DiskCache
from wiseft_explorer.curves import ALPHA_GRID
from wiseft_explorer.experiment import load_experiment
from wiseft_explorer.jobs import SweepJob
from wiseft_explorer.runtime import ExperimentRuntime
from wiseft_explorer.sweep import run_sweep


def test_job_matches_direct_sweep_and_reports_partials(tiny, tmp_path: Path) -> None:
    runtime = shared_runtime(tiny)
    partial_sizes: list[int] = []
    job = SweepJob(runtime, cache=DiskCache(tmp_path / "job-cache"))
    original = job._partial

    def record(result) -> None:
        partial_sizes.append(len(result.alphas))
        assert all(len(preds) == len(result.alphas) for preds in result.predictions.values())
        original(result)

    job._partial = record
    status = job.start().wait(timeout=300)
    assert status.finished and status.error is None
    assert status.done == status.total == len(ALPHA_GRID) * len(runtime.set_names)
    assert partial_sizes == list(range(1, len(ALPHA_GRID) + 1))
    direct = run_sweep(runtime, cache=DiskCache(tmp_path / "direct-cache"))
    assert status.result.table().equals(direct.table())


def test_coarse_alphas_come_first(tiny, tmp_path: Path) -> None:
    seen: list[list[float]] = []
    job = SweepJob(shared_runtime(tiny), cache=DiskCache(tmp_path / "c"))
    original = job._partial
    job._partial = lambda r: (seen.append(sorted(r.alphas)), original(r))
    job.start().wait(timeout=300)
    assert seen[0] == [0.0] and seen[1] == [0.0, 1.0] and seen[2] == [0.0, 0.5, 1.0]
    assert seen[4] == [0.0, 0.25, 0.5, 0.75, 1.0]


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
