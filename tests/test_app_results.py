"""Results computed elsewhere: a 2-process torchrun sweep of a copy of the experiment (other paths, other file times,
another cache) is opened in the app, which shows it on the Explorer and the Gallery without loading a model, and
says where it came from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from libkit import cli_env
from streamlit.testing.v1 import AppTest
from test_app import _metric_values, make_app_experiment
from tiny import write_folder

import wiseft_explorer.evaluation.runtime as runtime_module
from wiseft_explorer.core import ModelLoadError
from wiseft_explorer.evaluation import ExperimentRuntime, ResultsError, import_results

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory) -> tuple[Path, Path]:
    """(the app's experiment, a sweep JSONL computed by 2 processes on a copy of it in another folder)."""
    here = make_app_experiment(tmp_path_factory.mktemp("here"))
    there = Path(shutil.copytree(here.parent, tmp_path_factory.mktemp("cluster") / "copy"))
    shutil.rmtree(there / "cache", ignore_errors=True)
    out = there / "results.jsonl"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "wiseft_explorer", "sweep", "--experiment", str(there / here.name), "--quiet",
                          "--workers", "0", "--out", str(out)],
                         cwd=there, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return here, out


def test_the_app_opens_a_cluster_sweep_and_shows_it_without_loading_a_model(elsewhere, monkeypatch):
    toml, jsonl = elsewhere
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(toml))
    loads: list[str] = []

    def refuse(experiment, *args, **kwargs):
        loads.append(experiment.name)
        raise ModelLoadError("this test allows no model to load")

    monkeypatch.setattr(runtime_module, "load_models", refuse)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.text_input(key="results_path").set_value(str(jsonl)).run()  # typed (Enter): the button is enabled
    before = len(loads)
    assert before == 2  # nothing computed here yet: each run of the cold start asked for the models (refused)
    at.button(key="results_import").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    rows = {row["alpha"]: row for row in map(json.loads, jsonl.read_text().splitlines())}
    values = _metric_values(at)
    assert values["ID at α = 0.5"] == f"{100 * rows[0.5]['ID:top1']:.1f}%"
    assert values["Shifts at α = 0.5"] == f"{100 * rows[0.5]['avg_shifts:top1']:.1f}%"
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert "2 processes (gloo, cpu)" in sidebar and "imported from" in sidebar  # where it came from, and when
    assert any("Imported" in s.value for s in at.sidebar.success)
    gallery = AppTest.from_file(str(ROOT / "wiseft_explorer" / "ui" / "app" / "1_Gallery.py"), default_timeout=TIMEOUT)
    gallery.query_params["alpha"] = "0.5"
    gallery.run()
    assert not gallery.exception and not gallery.error, [e.value for e in [*gallery.exception, *gallery.error]]
    assert [m for m in gallery.markdown if m.value.startswith("**#")]  # the image tiles with their predictions
    assert "2 processes (gloo, cpu)" in " ".join(m.value for m in gallery.sidebar.markdown)
    assert len(loads) == before  # importing and showing the sweep loaded no model


def test_results_of_other_images_are_refused_with_the_set_named(elsewhere, tmp_path):
    toml, jsonl = elsewhere
    other = Path(shutil.copytree(toml.parent, tmp_path / "other", ignore=shutil.ignore_patterns("cache")))
    write_folder(other / "extra", 1, seed=3)
    shutil.copy(next((other / "extra" / "red square").iterdir()), other / "id" / "red square" / "extra.png")
    with pytest.raises(ResultsError, match="set 'ID': the images here are not those"):
        import_results(ExperimentRuntime.from_path(other / toml.name), jsonl)


def test_results_of_other_prompts_name_the_whole_prompts_that_differ(elsewhere, tmp_path):
    toml, jsonl = elsewhere
    other = Path(shutil.copytree(toml.parent, tmp_path / "other", ignore=shutil.ignore_patterns("cache")))
    text = (other / toml.name).read_text()
    (other / toml.name).write_text(text.replace('"a picture of a {}."', '"a blurry picture of a {}."'))
    with pytest.raises(ResultsError) as info:
        import_results(ExperimentRuntime.from_path(other / toml.name), jsonl)
    assert str(info.value).endswith("templates differ: 'a picture of a {}.' only there; "
                                    "'a blurry picture of a {}.' only here")
