"""The model side's imports begun with the server (issue #25, item 3): `wiseft-explorer app` starts importing torch
and open_clip before any visitor arrives when the default experiment would start cold, and not on a warm server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wiseft_explorer.cli import serve
from wiseft_explorer.ui import preload
from wiseft_explorer.ui.app import APP_SCRIPT

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import streamlit_client as sc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TORCH_LIBRARY = "libtorch_cpu"


def own_cache(tiny, root: Path) -> Path:
    """The tiny experiment with a cache folder of its own (the shared fixture's cache stays untouched)."""
    root.mkdir(parents=True, exist_ok=True)
    toml = root / "tiny.toml"
    text = tiny.toml.read_text().replace('cache_dir = "cache"', f'cache_dir = "{root / "cache"}"')
    for name in ("zeroshot.safetensors", "finetuned.safetensors", tiny.config.name, "id", "shift"):
        text = text.replace(f'"{name}"', f'"{tiny.root / name}"')
    toml.write_text(text)
    return toml


def test_preload_only_where_the_default_experiment_starts_cold(tiny, tmp_path, monkeypatch):
    toml = own_cache(tiny, tmp_path / "exp")
    monkeypatch.delenv(preload.ENV_PRELOAD, raising=False)
    assert preload.starts_cold(toml) and preload.wanted(toml)
    assert not preload.wanted(tmp_path / "missing.toml")  # the page shows the error; it needs no torch
    monkeypatch.setattr(preload, "stored_curves", lambda exp: object())  # curves stored: a warm start
    assert not preload.starts_cold(toml) and not preload.wanted(toml)
    monkeypatch.setenv(preload.ENV_PRELOAD, "1")
    assert preload.wanted(toml)
    monkeypatch.setattr(preload, "stored_curves", lambda exp: None)
    monkeypatch.setenv(preload.ENV_PRELOAD, "0")
    assert not preload.wanted(toml)


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def _server(toml: Path, cache: Path, launcher: str, **env: str):
    return sc.start_server(ROOT / "app.py", {"WISEFT_EXPERIMENT": str(toml), "WISEFT_CACHE_DIR": str(cache), **env},
                           launcher=launcher)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads the server's memory map from /proc")
def test_the_app_command_imports_torch_before_any_visitor(tiny, tmp_path, monkeypatch):
    """No page is requested: torch's library is mapped into the server all the same, within a minute."""
    toml = own_cache(tiny, tmp_path / "exp")
    monkeypatch.delenv(preload.ENV_PRELOAD, raising=False)
    proc, _ = _server(toml, tmp_path / "cache", serve.PRELOAD_MODULE)
    try:
        deadline = time.monotonic() + 60
        while TORCH_LIBRARY not in _maps(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert TORCH_LIBRARY in _maps(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    # The same launcher told not to preload (as on a warm server): no torch while no page asks for it.
    proc, _ = _server(toml, tmp_path / "cache", serve.PRELOAD_MODULE, **{preload.ENV_PRELOAD: "0"})
    try:
        time.sleep(3)
        assert TORCH_LIBRARY not in _maps(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


ARENAS_SCRIPT = """
import ctypes, sys, threading
from wiseft_explorer.ui import preload
from wiseft_explorer.ui.app import APP_SCRIPT
capped = preload.cap_malloc_arenas() if sys.argv[1] == "cap" else False
def work():
    kept = [bytearray(4096 + i) for i in range(200)]  # glibc malloc (above pymalloc's 512 bytes)
threads = [threading.Thread(target=work) for _ in range(6)]  # a script thread per session, as Streamlit runs them
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
out = libc.fopen(sys.argv[2].encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(out))
libc.fclose(ctypes.c_void_p(out))
print(capped, open(sys.argv[2]).read().count("<heap nr="))
"""


def test_the_server_keeps_two_malloc_arenas_however_many_session_threads(tmp_path):
    """Each session's script thread took a malloc arena of its own, kept after it ended (USS +40-70 MB for a
    classroom); capped, six threads share two."""
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    counts = {}
    for mode in ("cap", "default"):
        out = subprocess.run([sys.executable, "-c", ARENAS_SCRIPT, mode, str(tmp_path / f"{mode}.xml")], env=env,
                             capture_output=True, text=True, check=True, timeout=60).stdout.split()
        counts[mode] = (out[0], int(out[1]))
    assert counts["cap"] == ("True", preload.MALLOC_ARENAS)
    assert counts["default"][1] > preload.MALLOC_ARENAS  # what the cap saves


def test_starting_the_preload_caps_the_arenas(monkeypatch):
    calls = []
    monkeypatch.setattr(preload, "cap_malloc_arenas", lambda: calls.append(1) or True)
    monkeypatch.setattr(preload, "_started", [])
    monkeypatch.setenv(preload.ENV_PRELOAD, "0")
    preload.start().join(10)
    preload.start().join(10)
    assert calls == [1]  # once per process, before the first thread


@pytest.mark.parametrize("script", [ROOT / "app.py", APP_SCRIPT], ids=["app.py", "package main.py"])
def test_loader_workers_do_not_run_the_app_again(script):
    """A forkserver worker runs the server's main script as `__mp_main__` before its first batch (multiprocessing's
    spawn.prepare -> runpy.run_path): the entry scripts must import nothing there, or every loader's workers load
    Streamlit and all pages (0.6 s each) and flood the server's log (64 KiB of it blocked a test's server)."""
    code = ("import runpy, sys; runpy.run_path(sys.argv[1], run_name='__mp_main__'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('streamlit', 'torch', 'plotly')"
            " or m.startswith('wiseft_explorer.ui.')))")
    run = subprocess.run([sys.executable, "-c", code, str(script)], capture_output=True, text=True, timeout=60,
                         cwd=ROOT, check=True)
    assert run.stdout.strip() == "[]", run.stdout
    assert run.stderr == ""
