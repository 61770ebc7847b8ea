"""Shared runtimes for a server: one per experiment file version, the least recently used evicted past a memory budget.

A Streamlit server keeps the runtimes of the experiments its visitors open. Each one holds both models, the weight
line and a couple of working models: several times the image tower (4.8 GB for one ViT-B-32 experiment), so a server
that kept every experiment it had ever opened grew without bound. The registry keeps them within a budget instead.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import psutil

from .runtime import ExperimentRuntime

BUDGET_ENV = "WISEFT_MODEL_BUDGET_GB"
DEFAULT_FRACTION = 0.5  # of the machine's RAM, when the environment does not say


def default_budget() -> int:
    """The models' memory budget in bytes: $WISEFT_MODEL_BUDGET_GB, else half of this machine's RAM."""
    value = os.environ.get(BUDGET_ENV)
    if value:
        try:
            return int(float(value) * 2 ** 30)
        except ValueError:  # float()'s own message only repeats the value quoted here: noise
            raise ValueError(f"{BUDGET_ENV}={value!r}: expected a number of gigabytes, e.g. 8") from None
    return int(psutil.virtual_memory().total * DEFAULT_FRACTION)


class RuntimeRegistry:
    """Runtimes by (experiment file, version of its files, endpoint); `trim` evicts the least recently used beyond the
    budget. The version is store.keys.files_version in the app: a rewritten checkpoint gets a new runtime."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = default_budget() if budget is None else budget
        self._runtimes: OrderedDict[tuple[str, int | str, str | None], ExperimentRuntime] = OrderedDict()
        self._lock = threading.Lock()
        self.evicted = 0

    def get(self, path: str, version: int | str, endpoint: str | None = None) -> ExperimentRuntime:
        """The shared runtime of an experiment file at one version and fine-tuned endpoint (nothing loaded yet)."""
        key = (path, version, endpoint)
        with self._lock:
            runtime = self._runtimes.get(key)
            if runtime is None:
                runtime = self._runtimes[key] = ExperimentRuntime.from_path(path, endpoint)
            self._runtimes.move_to_end(key)
            return runtime

    def memory(self) -> int:
        """Bytes of tensors the registered runtimes hold."""
        with self._lock:
            runtimes = list(self._runtimes.values())
        return sum(runtime.memory_bytes() for runtime in runtimes)

    def trim(self, keep: ExperimentRuntime | None = None) -> list[ExperimentRuntime]:
        """Evict least recently used runtimes until the rest fit the budget (never `keep`); returns the evicted."""
        evicted = []
        with self._lock:
            sizes = {key: runtime.memory_bytes() for key, runtime in self._runtimes.items()}
            total = sum(sizes.values())
            for key in list(self._runtimes):
                if total <= self.budget:
                    break
                if self._runtimes[key] is keep:
                    continue
                total -= sizes[key]
                evicted.append(self._runtimes.pop(key))
        self.evicted += len(evicted)
        return evicted

    def __contains__(self, runtime: ExperimentRuntime) -> bool:
        with self._lock:
            return any(r is runtime for r in self._runtimes.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._runtimes)
