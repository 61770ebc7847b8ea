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


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyExperiment:
    """A tiny random open_clip experiment on disk (built once per test session)."""
    return make_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the user's cache from tests."""
    monkeypatch.setenv("WISEFT_CACHE_DIR", str(tmp_path / "wiseft-cache"))
