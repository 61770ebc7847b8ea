"""What the server builds once and every session shares (issue #25, item 4): parsed experiments, stored curves, the
Explorer's figures, the Upload page's figure without a second validation. Counts of work, never timings."""

from __future__ import annotations

import cProfile
import json
import pstats
import shutil

import pandas as pd
import plotly.graph_objects as go
import plotly.io
import pytest

from wiseft_explorer.experiment import ExperimentError
from wiseft_explorer.presentation import plots
from wiseft_explorer.results import ALPHA_GRID, Curves
from wiseft_explorer.ui import figures, memo


def test_memo_builds_once_keeps_the_last_used_and_holds_what_its_keys_name():
    cache, built = memo.Memo(2), []

    def build(value):
        built.append(value)
        return value

    owner = object()
    assert cache.get(("a", id(owner)), lambda: build(1), keep=(owner,)) == 1
    assert cache.get(("a", id(owner)), lambda: build(99)) == 1  # a hit: not built again
    cache.get("b", lambda: build(2))
    cache.get(("a", id(owner)), lambda: build(99))  # "a" used last: "b" goes first
    cache.get("c", lambda: build(3))
    assert cache.get("b", lambda: build(4)) == 4 and built == [1, 2, 3, 4] and cache.builds == 4
    assert cache.get(("a", id(owner)), lambda: build(5)) == 5  # evicted by "b" and "c"


@pytest.fixture
def own_copy(tiny, tmp_path):
    """The tiny experiment copied, so that its files can be rewritten and removed."""
    return shutil.copytree(tiny.root, tmp_path / "exp") / tiny.toml.name


def test_an_experiment_file_is_parsed_once_per_version(own_copy, monkeypatch):
    calls = []
    real = memo.load_experiment
    monkeypatch.setattr(memo, "load_experiment", lambda path: calls.append(path) or real(path))
    first = memo.parsed_experiment(own_copy)
    assert memo.parsed_experiment(own_copy) is first and len(calls) == 1  # three times a rerun before
    own_copy.write_text(own_copy.read_text().replace('name = "', 'name = "renamed ', 1))
    assert memo.parsed_experiment(own_copy).name.startswith("renamed") and len(calls) == 2


def test_a_checkpoint_gone_since_parsing_is_still_reported(own_copy):
    experiment = memo.parsed_experiment(own_copy)
    experiment.finetuned.unlink()
    with pytest.raises(ExperimentError, match="not found"):
        memo.parsed_experiment(own_copy)


def _curves(top: float) -> Curves:
    sets = ("ID", "Shift")
    return Curves("ID", None, ["Shift"], list(ALPHA_GRID), {s: dict.fromkeys(ALPHA_GRID, top) for s in sets})


def test_stored_curves_are_read_once_per_version_of_their_file(own_copy, tmp_path, monkeypatch):
    experiment = memo.parsed_experiment(own_copy)
    where = tmp_path / "curves.json"
    where.write_text(_curves(0.5).to_json())
    monkeypatch.setattr(memo, "curves_path", lambda _exp: where)
    monkeypatch.setattr(memo, "stored_curves", lambda _exp, path: Curves.from_json(path.read_text()))
    first = memo.stored(experiment, own_copy)
    assert memo.stored(experiment, own_copy) is first  # one shared object: the figures are keyed on it
    where.write_text(_curves(0.75).to_json() + "\n")
    again = memo.stored(experiment, own_copy)
    assert again is not first and again.top1("ID", 0.5) == 0.75


def test_the_explorer_figures_are_built_once_for_every_session_at_an_alpha():
    curves = _curves(0.5)
    before = figures.statistics()["builds"]
    paths = figures.endpoint_paths(None, curves, {})
    shown = [figures.accuracy_figure(curves, alpha, paths) for alpha in (0.5, 0.5, 0.5, 0.25)]
    assert shown[0] is shown[1] is shown[2] and shown[3] is not shown[0]
    assert figures.endpoint_paths(None, curves, {}) is paths
    assert figures.statistics()["builds"] - before == 3  # the paths and two figures
    assert plots.current_alpha_of(shown[3]) == 0.25


def _frame() -> pd.DataFrame:
    return pd.DataFrame([{"alpha": a, "class": f"class {c}", "probability": (c + 1) / 15} for a in ALPHA_GRID
                         for c in range(5)])


@pytest.mark.parametrize("alpha", [0.3, None])
def test_the_probability_figure_is_what_plotly_validation_would_make_of_it(alpha):
    fig = plots.probability_vs_alpha(_frame(), alpha, "class 1")
    validated = go.Figure(fig.to_dict())  # validation coerces, e.g. a bare axis title into {"text": ...}
    assert json.loads(plotly.io.to_json(fig, validate=False)) == json.loads(plotly.io.to_json(validated,
                                                                                             validate=False))


def test_the_probability_figure_is_not_validated_again():
    frame, profile = _frame(), cProfile.Profile()
    plots.probability_vs_alpha(frame, 0.3, "class 1")  # plotly's first figure sets up its validators
    profile.enable()
    plots.probability_vs_alpha(frame, 0.3, "class 1")
    profile.disable()
    # Measured after a first call: 20,000 Python calls with plotly's validation, 11,700 without (the rest is
    # plotly copying its default template into the figure).
    assert pstats.Stats(profile).total_calls < 15_000


def test_the_experiment_listing_follows_files_added_to_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WISEFT_EXPERIMENTS_DIR", str(tmp_path))
    assert not [p for p, _ in memo.listed() if p.parent == tmp_path]
    assert memo.listed() is memo.listed()  # listed once while the folders stand
    (tmp_path / "mine.toml").write_text("")
    assert [(p.name, label) for p, label in memo.listed() if p.parent == tmp_path] == [("mine.toml", str(
        tmp_path / "mine.toml"))]
