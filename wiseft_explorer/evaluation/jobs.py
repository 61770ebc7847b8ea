"""Background sweeps: the streaming alpha sweep in a worker thread, exposing progress and partial results, and the
per-process registry that gives every experiment one such sweep, however many sessions watch it."""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from ..results.curves import ALPHA_GRID
from ..store.cache import DiskCache
from ..store.keys import cache_key, software_versions
from .engine import StreamProgress
from .runtime import ExperimentRuntime
from .sweep import cached_sweep, run_sweep
from .sweep_result import SweepResult

SNAPSHOT_SECONDS = 1.0  # how often readers get a new partial result while the sets stream


@dataclass(frozen=True)
class JobStatus:
    """A consistent snapshot of a job: images done, the partial result (every alpha, the images so far), any error."""

    done: int
    total: int
    message: str
    result: SweepResult | None
    finished: bool
    error: BaseException | None
    progress: StreamProgress | None = None

    @property
    def fraction(self) -> float:
        """Progress in [0, 1]."""
        return self.done / self.total if self.total else 0.0


class SweepJob:
    """One sweep of an experiment, computed once in a daemon thread and read by any number of sessions."""

    def __init__(self, runtime: ExperimentRuntime, alphas: tuple[float, ...] = ALPHA_GRID,
                 cache: DiskCache | None = None) -> None:
        self.runtime: ExperimentRuntime | None = runtime  # None once the sweep has ended
        self.alphas, self.cache = alphas, cache
        self._lock = threading.Lock()
        self._done, self._total, self._message = 0, 0, "starting"
        self._progress: StreamProgress | None = None
        self._result: SweepResult | None = None
        self._finished = False
        self._error: Exception | None = None
        self._snapshot_at = 0.0
        self.started_at = self.finished_at = 0.0
        self._thread = threading.Thread(target=self._run, name="wiseft-sweep", daemon=True)

    def start(self) -> SweepJob:
        """Start the worker (idempotent)."""
        with self._lock:
            if not self._thread.is_alive() and not self.started_at:
                self.started_at = time.perf_counter()
                self._thread.start()
        return self

    def _on_progress(self, progress: StreamProgress, snapshot: Callable[[], SweepResult]) -> None:
        # Building a partial result gathers every set's predictions: do it once a second, not after every batch
        # (and not after the last one: the final result follows at once).
        now = time.perf_counter()
        result = None
        if progress.first_round and progress.done < progress.total and now - self._snapshot_at >= SNAPSHOT_SECONDS:
            result, self._snapshot_at = snapshot(), now
        with self._lock:
            self._done, self._total, self._progress = progress.done, progress.total, progress
            self._message = progress.line()
            if result is not None:
                self._result = result

    def _run(self) -> None:
        runtime = self.runtime
        assert runtime is not None  # the thread runs once, and only this method drops the runtime, at its end
        try:
            result = run_sweep(runtime, self.alphas, cache=self.cache, on_progress=self._on_progress)
        except Exception as err:  # reported to every reader instead of dying silently in the thread
            with self._lock:
                self._error, self._finished, self.runtime = err, True, None
            return
        with self._lock:
            self._result, self._finished, self.finished_at = result, True, time.perf_counter()
            self.runtime = None  # the result is all readers need: the runtime may be evicted from the registry
            self._done = self._total = max(self._total, 1)
            self._message = "done"

    def status(self) -> JobStatus:
        """The current state (thread-safe)."""
        with self._lock:
            return JobStatus(self._done, self._total, self._message, self._result, self._finished, self._error,
                             self._progress)

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the sweep is finished (or the timeout passes); returns the status."""
        self._thread.join(timeout)
        return self.status()


class FinishedJob:
    """A job stand-in for a complete sweep: found in the disk cache (a warm start starts no thread) or imported."""

    def __init__(self, result: SweepResult) -> None:
        self._status = JobStatus(1, 1, "from cache", result, True, None)

    def status(self) -> JobStatus:
        """Always finished, with the result."""
        return self._status


_SWEEP_KEYS: weakref.WeakKeyDictionary[ExperimentRuntime, str] = weakref.WeakKeyDictionary()


def sweep_key(runtime: ExperimentRuntime) -> str:
    """Identity of an experiment's sweep: its models, prompts and every set's content.

    Computed once per shared runtime: the app's progress fragment asks every second, and a folder set's fingerprint
    stats every file in it (the runtime also decodes each set only once, so the answer cannot change under it).
    """
    key = _SWEEP_KEYS.get(runtime)
    if key is None:
        sets = {name: runtime.set_fingerprint(name) for name in runtime.set_names}
        key = _SWEEP_KEYS[runtime] = cache_key(kind="app-sweep", **runtime.fingerprint,
                                               sets=json.dumps(sets, sort_keys=True),
                                               versions=software_versions())
    return key


class SweepJobs:
    """The sweeps of one process: one full-grid job per experiment (by sweep_key), shared by all its readers."""

    def __init__(self) -> None:
        self._jobs: dict[str, SweepJob | FinishedJob] = {}
        self._lock = threading.Lock()

    def job(self, runtime: ExperimentRuntime) -> SweepJob | FinishedJob:
        """The experiment's sweep: read from the disk cache if complete, else started in the background; a failed
        job is replaced by a new one on the next call."""
        key = sweep_key(runtime)
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.status().error is not None:
                cached = cached_sweep(runtime, ALPHA_GRID)
                job = self._jobs[key] = FinishedJob(cached) if cached is not None else SweepJob(runtime).start()
        return job

    def adopt(self, runtime: ExperimentRuntime, result: SweepResult) -> None:
        """Serve a complete sweep (e.g. an imported one) from now on, in place of any job computing it here."""
        key = sweep_key(runtime)
        with self._lock:
            self._jobs[key] = FinishedJob(result)
