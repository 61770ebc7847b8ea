"""What the server builds once and every session reuses read-only: parsed experiments, stored curves, figures.

Every rerun of every session used to parse the experiment's TOML three times, read its curves' JSON and rebuild
both plotly figures; on 2 cores, 32 students changing α at once wait for 32 of those reruns. These memos are plain
dictionaries behind a lock, keyed on what the value is made from (a file's size, mtime_ns and inode, the identity of
a shared object), which is cheaper to build than Streamlit's hashed caches (st.cache_data pickles and hashes its
arguments on every call). What they hold is shared by all sessions: callers must never change it.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TypeVar

from ..experiment.locations import (
    BUILTIN_EXPERIMENTS,
    ENV_EXPERIMENTS_DIR,
    experiment_label,
    is_listed,
    listed_experiments,
    named_experiment,
)
from ..experiment.parse import load_experiment
from ..experiment.spec import Experiment
from ..results.curves import Curves, curves_path, stored_curves
from ..store.keys import files_version

T = TypeVar("T")


def stamp(path: Path | str) -> tuple[int, int, int] | None:
    """A file's size, mtime_ns and inode (None when missing): it changes when the file is rewritten."""
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns, stat.st_ino)


class Memo:
    """A bounded, thread-safe, least-recently-used memo shared by the server's sessions.

    `get(key, build, keep)`: the value stored under `key`, else `build()` stored. `keep`: the objects whose `id()`
    the key holds; the entry keeps them alive, so that no other object can take their id while it is stored.
    Values are built outside the lock (two sessions may both build a missing value; one of them is kept)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, tuple[tuple[object, ...], object]] = OrderedDict()
        self._lock = threading.Lock()
        self.builds = 0  # values built so far (tests and benchmarks count the work saved)

    def get(self, key: Hashable, build: Callable[[], T], keep: tuple[object, ...] = ()) -> T:
        """The value under `key`, built with `build()` when absent."""
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key][1]  # type: ignore[return-value]
        value = build()
        with self._lock:
            self.builds += 1
            self._entries[key] = (keep, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()


_PARSED = Memo(32)  # experiment file as it stands -> its files' version and the parsed experiment
_LINKS = Memo(64)  # experiment file as it stands, here -> the name a link gives it, or None
_CURVES_FILES = Memo(32)  # experiment file, its files' version, endpoint -> where its curves are stored
_CURVES = Memo(64)  # stored curves file as it stands -> its curves (shared: read-only)


def parsed_experiment(path: Path) -> Experiment:
    """load_experiment(path), parsed once per version of the experiment file; parsed again (and its error raised)
    when a file it names has changed or gone since (store.keys.files_version)."""
    version, experiment = _PARSED.get((str(path), stamp(path)), lambda: _versioned(load_experiment(path)))
    return experiment if files_version(experiment) == version else load_experiment(path)


def _versioned(experiment: Experiment) -> tuple[str, Experiment]:
    return files_version(experiment), experiment


def link_name(path: Path) -> str | None:
    """The name `?experiment=` gives this file, when a link can name it (a file of the experiment folders)."""
    def name() -> str | None:
        return path.name if is_listed(path) and named_experiment(path.name) == path.resolve() else None

    return _LINKS.get((str(path), stamp(path), os.getcwd(), os.environ.get(ENV_EXPERIMENTS_DIR)), name)


def stored(experiment: Experiment, path: Path) -> Curves | None:
    """The stored full-grid curves of the experiment read from `path`, read once per version of the curves file.

    Where they are is found once per version of the experiment's files (store.keys.files_version), since a folder
    set's content key stats every file in it (the shared runtime is keyed the same way, so both see a set as it was
    when first loaded, and both follow a rewritten checkpoint)."""
    endpoint = experiment.endpoint
    where = _CURVES_FILES.get((str(path), files_version(experiment), endpoint),
                              lambda: curves_path(load_experiment(path).with_endpoint(endpoint)))
    return _CURVES.get((str(where), stamp(where)), lambda: stored_curves(experiment, where))


_LISTINGS = Memo(8)  # the experiment folders as they stand, here -> their TOML files and labels


def listed() -> list[tuple[Path, str]]:
    """locations.listed_experiments with their picker labels, listed again when a folder changes (a file added,
    removed or renamed changes its folder's mtime)."""
    env = os.environ.get(ENV_EXPERIMENTS_DIR)
    user = Path(env).expanduser() if env else Path.cwd() / "experiments"
    key = (os.getcwd(), env, stamp(BUILTIN_EXPERIMENTS), stamp(user))
    return _LISTINGS.get(key, lambda: [(path, experiment_label(path)) for path in listed_experiments()])


def label(path: Path) -> str:
    """locations.experiment_label, from the listing when the file is in it."""
    return next((name for listed_path, name in listed() if listed_path == path), None) or experiment_label(path)
