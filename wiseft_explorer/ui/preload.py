"""The model side's imports (torch, open_clip, the sweep) begun in a background thread when the server starts.

A cold start spends seconds importing torch and open_clip before its models can load; a thread started with the
server has done most of that by the time the first visitor's page asks for them. A warm server (the default
experiment's curves are stored) does not start it: its first page is drawn from the stored curves without torch,
and an import racing it for the interpreter would only slow it down.

`python -m wiseft_explorer.ui.preload run APP [streamlit flags]` is `streamlit run` with the preload begun first
(`wiseft-explorer app` starts the server this way). The entry script also calls `start()`, so that a plain
`streamlit run app.py` begins it at its first visitor, at the latest; every call after the first does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import logging
import os
import sys
import threading
import time
from pathlib import Path

from ..core.lean_import import import_open_clip
from ..experiment.parse import load_experiment
from ..experiment.spec import ExperimentError
from ..results.curves import stored_curves
from .state import default_experiment

MALLOC_ARENAS = 2  # glibc's malloc arenas for the server (default: 8 per core, one taken per busy script thread)
ENV_PRELOAD = "WISEFT_PRELOAD"  # "1": always, "0": never; unset: only when the default experiment would start cold
# What a cold start's first page imports, in order: torch and open_clip (most of the time; open_clip without
# transformers, which no model of the demo or the presets needs: core/lean_import.py), then the sweep side.
MODULES = ("torch", "open_clip", "wiseft_explorer.evaluation.registry", "wiseft_explorer.ui.results")

_LOG = logging.getLogger(__name__)
_lock = threading.Lock()
_started: list[threading.Thread] = []  # the one preload thread of this process, once begun
timings: dict[str, float] = {}  # module -> seconds from the thread's start to its import done


def starts_cold(path: Path) -> bool:
    """Whether the experiment at `path` has no stored curves for its first endpoint (its page needs the models)."""
    try:
        experiment = load_experiment(path).with_endpoint(None)
    except (ExperimentError, OSError, ValueError):
        return False  # the page shows the error; nothing it draws needs torch
    return stored_curves(experiment) is None


def wanted(path: Path) -> bool:
    """Whether to preload for a server whose default experiment is `path` ($WISEFT_PRELOAD overrides)."""
    setting = os.environ.get(ENV_PRELOAD, "").strip()
    return setting == "1" if setting in ("0", "1") else starts_cold(path)


def _preload(path: Path) -> None:
    t0 = time.perf_counter()
    if not wanted(path):
        return
    for name in MODULES:
        try:
            import_open_clip() if name == "open_clip" else importlib.import_module(name)
        except Exception:  # the page that needs the module imports it again and shows the error where it can be fixed
            _LOG.warning("preloading %s failed; the first page that needs it will report why", name, exc_info=True)
            return
        timings[name] = round(time.perf_counter() - t0, 2)


def cap_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc keep at most `arenas` arenas in this process (unless $MALLOC_ARENA_MAX already says how
    many); whether the cap was set. A classroom's sessions run their scripts in threads of their own, and each busy
    thread took an arena of its own that stayed: measured on the demo, USS grew 40-70 MB with 10 to 60 students,
    and 0 to 5 MB with 2 arenas (docs/benchmarks.md, "A classroom on one server")."""
    if "MALLOC_ARENA_MAX" in os.environ or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # -8: M_ARENA_MAX (malloc.h); 1 on success
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to cap
        return False


def start(path: Path | None = None) -> threading.Thread:
    """Begin the preload for the default experiment (or `path`) in a daemon thread, once per process, after capping
    malloc's arenas; the thread (`timings` says what it has imported so far)."""
    with _lock:
        if not _started:
            cap_malloc_arenas()
            thread = threading.Thread(target=_preload, args=(path or default_experiment(),), name="wiseft-preload",
                                      daemon=True)
            thread.start()
            _started.append(thread)
        return _started[0]


def main(argv: list[str]) -> int:
    """`streamlit run …` (argv as for the `streamlit` command) with the preload begun first."""
    from streamlit.web.cli import main as streamlit_main

    start()
    return int(streamlit_main(args=argv, prog_name="streamlit") or 0)  # click exits with the server's status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
