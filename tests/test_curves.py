"""Stored curves: the torch-free copy of a full sweep that the Explorer draws on a warm start."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest
from libkit import REPO, write_experiment
from streamlit.testing.v1 import AppTest

from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
from wiseft_explorer.experiment import load_experiment
from wiseft_explorer.results import (
    ALPHA_GRID,
    AVG_ROW,
    Curves,
    choose_alphas,
    curves_path,
    store_curves,
    stored_curves,
)


@pytest.fixture(scope="module")
def swept(tiny, tmp_path_factory):
    """A fresh experiment file (own cache) and its full sweep."""
    folder = tmp_path_factory.mktemp("curves")
    toml = write_experiment(folder, tiny)
    runtime = ExperimentRuntime.from_path(toml)
    return toml, run_sweep(runtime)


def test_a_full_sweep_stores_curves_equal_to_its_table(swept):
    toml, result = swept
    curves = stored_curves(load_experiment(toml))
    assert curves is not None
    assert curves.table().equals(result.table())
    assert choose_alphas(curves) == choose_alphas(result.curves())
    assert curves.accuracies(0.35)["ID"] == result.top1("ID", 0.35)
    assert curves.grid_alpha(0.35 + 1e-12) == 0.35 and curves.grid_alpha(0.33) is None


def test_partial_or_broken_curves_are_not_used(swept, tmp_path):
    toml, result = swept
    exp = load_experiment(toml)
    partial = result.curves()
    partial.alphas = partial.alphas[:5]
    assert store_curves(exp, partial) is None  # a partial grid is never stored
    path = curves_path(exp)
    good = path.read_text()
    path.write_text(good[: len(good) // 2])  # truncated by a crash of something else
    assert stored_curves(exp) is None
    incomplete = Curves.from_json(good)
    incomplete.top1s["ID"].pop(ALPHA_GRID[3])
    path.write_text(incomplete.to_json())
    assert stored_curves(exp) is None
    path.write_text(good)
    assert stored_curves(exp) is not None


def test_changed_checkpoint_changes_the_curves_file(swept):
    toml, _ = swept
    exp = load_experiment(toml)
    before = curves_path(exp)
    stamp = time.time_ns() + 10**9
    os.utime(exp.finetuned, ns=(stamp, stamp))  # same bytes: the content hash, not the mtime, names the file
    assert curves_path(exp) == before
    data = exp.finetuned.read_bytes()
    try:
        exp.finetuned.write_bytes(data + b" ")
        assert curves_path(exp) != before
        assert stored_curves(exp) is None  # the sweep must be recomputed for the new weights
    finally:
        exp.finetuned.write_bytes(data)


def test_reading_curves_does_not_import_torch(swept):
    toml, _ = swept
    code = ("import sys\n"
            "from wiseft_explorer.experiment.parse import load_experiment\n"
            "from wiseft_explorer.results.curves import stored_curves\n"
            "import wiseft_explorer.ui.explorer, wiseft_explorer.ui.state, wiseft_explorer.ui.sidebar, wiseft_explorer.presentation.plots\n"
            f"curves = stored_curves(load_experiment({str(toml)!r}))\n"
            "assert curves is not None\n"
            "print(sorted(m for m in ('torch', 'open_clip', 'torchvision') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_warm_start_draws_from_stored_curves_without_the_sweep(swept, monkeypatch):
    toml, result = swept
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(toml))
    from wiseft_explorer.ui import results

    def no_sweep(*args, **kwargs):
        raise AssertionError("a warm start must not touch the sweep")

    monkeypatch.setattr(results, "ensure_sweep", no_sweep)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params["alpha"] = "0.35"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    values = {m.label: m.value for m in at.metric}
    assert values["ID at α = 0.35"] == f"{100 * result.top1('ID', 0.35):.1f}%"
    assert any("zero-shot" in md.value for md in at.sidebar.markdown)  # model facts still load after the body


def test_the_shift_average_and_the_grid_have_one_home():
    top1 = {"ID": {0.0: 0.5, 0.5: 0.7}, "A": {0.0: 0.2, 0.5: 0.4}, "B": {0.0: 0.4, 0.5: 0.3}}
    curves = Curves("ID", None, ["A", "B"], [0.0, 0.5], top1)
    assert curves.avg_shifts(0.5) == pytest.approx(0.35)
    assert curves.accuracies(0.5) == pytest.approx({"ID": 0.7, "A": 0.4, "B": 0.3, AVG_ROW: 0.35})
    live = {"ID": 0.6, "A": 0.1, "B": 0.2}  # e.g. evaluated live at an off-grid alpha
    assert curves.with_average(live) == pytest.approx({**live, AVG_ROW: 0.15})
    assert math.isnan(Curves("ID", None, [], [0.0], {"ID": {0.0: 0.5}}).accuracies(0.0)[AVG_ROW])
    assert curves.grid_alpha(0.5 + 1e-7) == 0.5 and curves.grid_alpha(0.5 - 1e-5) is None
