"""Shared fixtures: a tiny generated experiment and an isolated cache directory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)

from tiny import TinyExperiment, make_tiny  # noqa: E402

pytest_plugins = ["pytester"]

# Marked by module, so that a new test in one of these files is marked too. `python -m pytest` runs everything;
# `-m "not slow and not browser"` is the quick loop. Chosen from `--durations`: each module here spent 7 s or more
# in subprocesses (the CLI, torchrun, killed and resumed sweeps), fine-tuning, building the demo or the benchmark.
BROWSER_MODULES = frozenset({"test_browser.py", "test_browser_merging.py", "test_classroom.py"})  # Streamlit servers driven by chromium
SLOW_MODULES = frozenset({
    "test_app_merging.py", "test_app_results.py", "test_app_stream.py", "test_bench.py", "test_build_demo.py",
    "test_cli.py", "test_distributed.py", "test_endpoints.py", "test_finetune.py", "test_finetune_stream.py",
    "test_lpft.py", "test_own_models.py", "test_family_cli.py",
    "test_presets.py", "test_readme_walk.py", "test_rewritten_checkpoint.py", "test_security.py",
    "test_server_memory.py", "test_stream.py",
})


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in BROWSER_MODULES:
            item.add_marker(pytest.mark.browser)
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyExperiment:
    """A tiny random open_clip experiment on disk (built once per test session)."""
    return make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's cache from tests."""
    monkeypatch.setenv("WISEFT_CACHE_DIR", str(tmp_path / "wiseft-cache"))


@pytest.fixture
def two(tiny, tmp_path):
    """The tiny experiment with a second fine-tuned endpoint from the same θ₀."""
    import shutil

    from tiny import fake_finetune

    from wiseft_explorer.core import load_checkpoint, save_checkpoint
    from wiseft_explorer.evaluation import ExperimentRuntime

    root = tmp_path / "exp"
    shutil.copytree(tiny.root, root, ignore=shutil.ignore_patterns("cache", "*.fisher-*"))
    runtime = ExperimentRuntime.from_path(root / "tiny.toml")
    other = fake_finetune(runtime.models.zeroshot, seed=7)
    meta = load_checkpoint(root / "finetuned.safetensors")[1]
    save_checkpoint(root / "other.safetensors", other.state_dict(), meta)
    text = (root / "tiny.toml").read_text().replace(
        '[finetuned]\ncheckpoint = "finetuned.safetensors"\n',
        '[[finetuned]]\nname = "a"\ncheckpoint = "finetuned.safetensors"\n\n'
        '[[finetuned]]\nname = "b"\ncheckpoint = "other.safetensors"\n')
    (root / "two.toml").write_text(text)
    return root / "two.toml"
