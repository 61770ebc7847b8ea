"""Where experiment files live: the built-in ones shipped inside the package, and the user's own folder."""

from __future__ import annotations

import os
from pathlib import Path

# Package data (pyproject's package-data), so that a plain `pip install` has the demo: no source checkout needed.
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEMO_ASSETS = ASSETS_DIR / "demo"
BUILTIN_EXPERIMENTS = ASSETS_DIR / "experiments"
DEFAULT_EXPERIMENT = BUILTIN_EXPERIMENTS / "demo.toml"
ENV_EXPERIMENTS_DIR = "WISEFT_EXPERIMENTS_DIR"


def user_experiments_dir() -> Path:
    """Where the user's experiment files go: $WISEFT_EXPERIMENTS_DIR, else ./experiments (from where you start)."""
    env = os.environ.get(ENV_EXPERIMENTS_DIR)
    return (Path(env).expanduser() if env else Path.cwd() / "experiments").resolve()


def experiment_folders() -> tuple[Path, ...]:
    """The folders whose TOML files the app lists and a link may name: the built-in ones, then the user's."""
    return tuple(dict.fromkeys([BUILTIN_EXPERIMENTS.resolve(), user_experiments_dir()]))


def listed_experiments() -> list[Path]:
    """Every experiment TOML of those folders (built-in first, each folder sorted by name)."""
    return [p for folder in experiment_folders() if folder.is_dir() for p in sorted(folder.glob("*.toml"))]


def named_experiment(name: str) -> Path | None:
    """The listed experiment file called `name` (e.g. "demo-linear.toml"), or None: nothing outside the folders."""
    for folder in experiment_folders():
        path = (folder / name).resolve()
        if path.suffix == ".toml" and path.parent == folder and path.is_file():
            return path
    return None


def is_listed(path: Path) -> bool:
    """True if a link can name this file: a TOML directly inside one of the experiment folders."""
    return path.suffix == ".toml" and path.resolve().parent in experiment_folders()


def experiment_label(path: Path) -> str:
    """A short name for a picker: "built-in: demo.toml", a path relative to here, or the absolute path."""
    resolved = path.resolve()
    if resolved.parent == BUILTIN_EXPERIMENTS.resolve():
        return f"built-in: {resolved.name}"
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(resolved)
