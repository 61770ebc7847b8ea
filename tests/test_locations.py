"""Where experiment files live (built-in package data, the user's folder) and how the app is started."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from wiseft_explorer.experiment import (
    BUILTIN_EXPERIMENTS,
    DEFAULT_EXPERIMENT,
    DEMO_ASSETS,
    ExperimentError,
    experiment_folders,
    experiment_label,
    listed_experiments,
    load_experiment,
    named_experiment,
    user_experiments_dir,
)

PACKAGE = Path(__file__).resolve().parent.parent / "wiseft_explorer"


def test_the_demo_ships_inside_the_package():
    assert BUILTIN_EXPERIMENTS.parent.parent == PACKAGE and DEMO_ASSETS.parent.parent == PACKAGE
    assert DEFAULT_EXPERIMENT.parent == BUILTIN_EXPERIMENTS
    shipped = {p.name for p in DEMO_ASSETS.glob("*.safetensors") if ".fisher-" not in p.name}  # not caches
    assert shipped == {"zeroshot.safetensors", "finetuned-e2e.safetensors", "finetuned-linear.safetensors",
                       "finetuned-lpft.safetensors", "finetuned-flyp.safetensors",
                       *(f"finetuned-e2e-{k}.safetensors" for k in (1, 2, 3))}
    # the issues' budget for everything the demo ships
    assert sum(p.stat().st_size for p in DEMO_ASSETS.iterdir() if ".fisher-" not in p.name) < 80e6
    # the built-in experiments point at the shipped checkpoints through relative paths, valid wherever it installs
    exp = load_experiment(DEFAULT_EXPERIMENT)
    assert exp.zeroshot.config.parent == DEMO_ASSETS.resolve()
    assert {e.checkpoint.parent for e in exp.endpoints} == {DEMO_ASSETS.resolve()}


def test_the_package_data_rule_covers_every_shipped_file():
    # pyproject's package-data is what a non-editable install copies; a new asset kind must be added there too.
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    kinds = {p.name for p in (PACKAGE / "assets").iterdir() if not p.name.startswith((".", "__"))}
    assert {"demo", "experiments", "testbed", "ytbb_robust"} <= kinds
    assert [k for k in sorted(kinds) if f'"assets/{k}/*"' not in text] == []


def test_user_experiments_go_to_the_current_folder_unless_configured(tmp_path, monkeypatch):
    monkeypatch.delenv("WISEFT_EXPERIMENTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert user_experiments_dir() == (tmp_path / "experiments").resolve()
    elsewhere = tmp_path / "mine"
    monkeypatch.setenv("WISEFT_EXPERIMENTS_DIR", str(elsewhere))
    assert user_experiments_dir() == elsewhere.resolve()
    assert experiment_folders() == (BUILTIN_EXPERIMENTS.resolve(), elsewhere.resolve())


def test_listed_and_named_experiments_are_the_two_folders_and_nothing_else(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    demo_text = DEFAULT_EXPERIMENT.read_text().replace("../demo/", str(DEMO_ASSETS) + "/")
    (folder / "own.toml").write_text(demo_text)
    (tmp_path / "outside.toml").write_text(demo_text)
    monkeypatch.setenv("WISEFT_EXPERIMENTS_DIR", str(folder))
    listed = listed_experiments()
    assert listed[0].parent == BUILTIN_EXPERIMENTS and listed[-1] == (folder / "own.toml").resolve()
    assert named_experiment("demo-linear.toml") == (BUILTIN_EXPERIMENTS / "demo-linear.toml").resolve()
    assert named_experiment("own.toml") == (folder / "own.toml").resolve()
    for bad in ("../outside.toml", str(tmp_path / "outside.toml"), "nope.toml", "demo.toml.example"):
        assert named_experiment(bad) is None, bad
    assert experiment_label(DEFAULT_EXPERIMENT) == "built-in: demo.toml"


def test_a_bare_name_loads_a_built_in_or_user_experiment_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WISEFT_EXPERIMENTS_DIR", str(tmp_path / "none"))
    assert load_experiment("demo-precise.toml").path == (BUILTIN_EXPERIMENTS / "demo-precise.toml").resolve()
    with pytest.raises(ExperimentError, match="demo-linear.toml, demo-precise.toml, demo-soups.toml, demo.toml"):
        load_experiment("missing.toml")
    with pytest.raises(ExperimentError, match="experiment file not found"):
        load_experiment(tmp_path / "sub" / "demo.toml")  # a path with a folder is taken as it is


def test_the_app_command_runs_streamlit_on_the_packaged_app(monkeypatch):
    from wiseft_explorer.cli import commands, serve
    from wiseft_explorer.ui.app import APP_SCRIPT

    calls = []

    def server(path: str, argv: list[str]) -> None:  # stands in for the server: exec (POSIX) or a child process
        calls.append((path, argv))
        raise SystemExit(0)

    monkeypatch.setattr(serve.os, "execv", server)
    monkeypatch.setattr(serve.subprocess, "call", lambda argv: server(argv[0], argv))
    with pytest.raises(SystemExit):
        commands.main(["app", "--server.port", "8502", "--runner.postScriptGC", "true"])
    [(path, argv)] = calls
    assert path == sys.executable
    assert argv[:5] == [sys.executable, "-m", serve.PRELOAD_MODULE, "run", str(APP_SCRIPT)]
    settings = argv[5:-4]  # the app's own settings, then the user's flags, which Streamlit lets win (the last one)
    assert dict(zip(settings[::2], settings[1::2], strict=True)) == {
        "--browser.gatherUsageStats": "false", "--server.fileWatcherType": "none", "--server.runOnSave": "false",
        "--client.toolbarMode": "minimal", "--runner.postScriptGC": "false"}
    assert argv[-4:] == ["--server.port", "8502", "--runner.postScriptGC", "true"]
    assert APP_SCRIPT.is_file() and APP_SCRIPT.parent.parent == PACKAGE / "ui"
    assert {p.name for p in APP_SCRIPT.parent.glob("[0-9]_*.py")} == {
        "1_Gallery.py", "2_Upload.py", "3_Models.py", "4_Lesson.py"}


def test_the_checkout_config_holds_the_packaged_app_settings():
    """`streamlit run app.py` in a checkout reads .streamlit/config.toml: the same settings `wiseft-explorer app` passes."""
    from wiseft_explorer.ui.app import SERVER_CONFIG

    checkout = PACKAGE.parent / ".streamlit" / "config.toml"
    assert tomllib.loads(checkout.read_text()) == tomllib.loads(SERVER_CONFIG.read_text())
