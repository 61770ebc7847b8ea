"""Background sweeps: the alpha sweep in a worker thread, exposing progress and partial results as it goes."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from .cache import DiskCache
from .curves import ALPHA_GRID
from .runtime import ExperimentRuntime
from .sweep import SweepResult, run_sweep


@dataclass(frozen=True)
class JobStatus:
    """A consistent snapshot of a job: progress, the alphas finished so far, and any error."""

    done: int
    total: int
    message: str
    result: SweepResult | None
    finished: bool
    error: BaseException | None

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
        self._done, self._total, self._message = 0, len(alphas) * len(runtime.set_names), "starting"
        self._result: SweepResult | None = None
        self._finished, self._error = False, None
        self.started_at = self.finished_at = 0.0
        self._thread = threading.Thread(target=self._run, name="wiseft-sweep", daemon=True)

    def start(self) -> SweepJob:
        """Start the worker (idempotent)."""
        with self._lock:
            if not self._thread.is_alive() and not self.started_at:
                self.started_at = time.perf_counter()
                self._thread.start()
        return self

    def _progress(self, done: int, total: int, name: str, alpha: float) -> None:
        with self._lock:
            self._done, self._total, self._message = done, total, f"{name} at α = {alpha:.2f}"

    def _partial(self, result: SweepResult) -> None:
        with self._lock:
            self._result = result

    def _run(self) -> None:
        try:
            result = run_sweep(self.runtime, self.alphas, cache=self.cache, progress=self._progress,
                               on_alpha=self._partial)
        except Exception as err:  # reported to every reader instead of dying silently in the thread
            with self._lock:
                self._error, self._finished = err, True
            return
        with self._lock:
            self._result, self._finished, self.finished_at = result, True, time.perf_counter()

    def status(self) -> JobStatus:
        """The current state (thread-safe)."""
        with self._lock:
            return JobStatus(self._done, self._total, self._message, self._result, self._finished, self._error)

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the sweep is finished (or the timeout passes); returns the status."""
        self._thread.join(timeout)
        return self.status()
