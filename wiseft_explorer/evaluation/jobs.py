"""Background sweeps: the streaming alpha sweep in a worker thread, exposing progress and partial results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..results.curves import ALPHA_GRID
from ..store.cache import DiskCache
from .engine import StreamProgress
from .runtime import ExperimentRuntime
from .sweep import run_sweep
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
        self.runtime, self.alphas, self.cache = runtime, alphas, cache
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
        try:
            result = run_sweep(self.runtime, self.alphas, cache=self.cache, on_progress=self._on_progress)
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
