"""The model side's imports begun with the server (issue #25, item 3): `wiseft-explorer app` starts importing torch
and open_clip before any visitor arrives when the default experiment would start cold, and not on a warm server."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from wiseft_explorer.cli import serve
from wiseft_explorer.ui import preload

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
