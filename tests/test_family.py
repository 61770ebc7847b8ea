"""The demo's family of standard classifiers: trained from scratch, written as JSON, and used as the demo's line."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from wiseft_explorer.demo import FamilyConfig, family_stage
from wiseft_explorer.experiment import ModelSpec, load_experiment
from wiseft_explorer.presentation import reference_overlay, robustness_cards
from wiseft_explorer.results import (
    FAMILY_FILE,
    FAMILY_TYPE,
    Curves,
    experiment_axes,
    experiment_robustness,
    reference_lines,
)

SHIFTS = ("resample", "sketch", "cartoon", "unusual", "corrupt")


def test_a_tiny_family_trains_and_writes_its_recipes_and_accuracies(tmp_path):
    config = FamilyConfig.tiny()
    path = family_stage(tmp_path, seed=3, config=config, progress=False)
    doc = json.loads(path.read_text())
    assert path.name == FAMILY_FILE and doc["seed"] == 3 and doc["images"] == 128
    assert [m["name"] for m in doc["members"]] == [r.name for r in config.members]
    for member, recipe in zip(doc["members"], config.members, strict=True):
        assert {k: member[k] for k in ("architecture", "width", "depth", "epochs", "lr")} == {
            k: getattr(recipe, k) for k in ("architecture", "width", "depth", "epochs", "lr")}
        assert member["seed"] == 3 and member["images"] == 128 and member["wall_s"] >= 0
        assert set(member["accuracy"]) == {"id-test", "id-val", *SHIFTS}
        assert all(list(acc) == ["64"] and 0 <= acc["64"] <= 1 for acc in member["accuracy"].values())
    # reuse keeps a file of the same recipe; another seed retrains
    stamp = path.stat().st_mtime_ns
    assert family_stage(tmp_path, 3, config, reuse=True, progress=False).stat().st_mtime_ns == stamp
    family_stage(tmp_path, 4, config, reuse=True, progress=False)
    assert json.loads(path.read_text())["seed"] == 4


def test_the_default_family_is_large_and_varied():
    config = FamilyConfig()
    recipes = config.members
    assert len(recipes) >= 12 and len({r.name for r in recipes}) == len(recipes)
    assert {r.architecture for r in recipes} == {"mlp", "cnn", "resnet"}
    assert len({r.width for r in recipes}) >= 3 and len({r.depth for r in recipes}) >= 3
    assert len({r.epochs for r in recipes}) >= 4
    # measured on the shipped experiments' counts: demo.toml's defaults and demo-precise.toml's limits
    assert config.counts("id-test") == [700, 3000] and config.counts("sketch") == [500, 2000]


def _family_file(folder, accuracies: dict[str, list[float]]) -> None:
    """A hand-written family.json: member k has accuracies[set][k] on every count."""
    members = [{"name": f"m{k}", "architecture": "cnn", "accuracy": {s: {"500": a[k], "700": a[k]}
                                                                     for s, a in accuracies.items()}}
               for k in range(len(accuracies["id-test"]))]
    (folder / FAMILY_FILE).write_text(json.dumps({"format": "wiseft-explorer demo family", "version": 1,
                                                  "members": members}))


@pytest.fixture
def world_experiment(tmp_path):
    """The built-in demo's experiment with its zero-shot checkpoint moved (on paper) into tmp_path."""
    from wiseft_explorer.experiment import DEFAULT_EXPERIMENT

    exp = load_experiment(DEFAULT_EXPERIMENT)
    return dataclasses.replace(exp, zeroshot=ModelSpec(exp.zeroshot.name, str(tmp_path / "zeroshot.safetensors"),
                                                       exp.zeroshot.config))


def test_a_world_experiment_takes_its_line_from_the_family_file(world_experiment, tmp_path):
    assert experiment_axes(world_experiment) == []  # no family.json: no line
    ids = [0.3, 0.45, 0.6, 0.7, 0.8]
    shift = {s: [0.2, 0.3, 0.42, 0.5, 0.61] for s in SHIFTS}
    _family_file(tmp_path, {"id-test": ids, "id-val": ids, **shift})
    axes = experiment_axes(world_experiment)
    assert [a.set_name for a in axes] == [s.name for s in world_experiment.shifts]
    assert {(a.x_column, a.y_column.split("-")[0]) for a in axes} >= {("id-test", "sketch")}
    assert not any(a.restricted for a in axes) and not axes[0].source.is_testbed
    lines = reference_lines(axes, "logit")
    # the logit fit by hand
    logit = lambda p: np.log(np.asarray(p) / (1 - np.asarray(p)))  # noqa: E731
    slope, intercept = np.polyfit(logit(ids), logit(shift["sketch"]), 1)
    fit = lines.on_id["Sketch"]
    assert fit.slope == pytest.approx(slope, abs=1e-9) and fit.intercept == pytest.approx(intercept, abs=1e-9)
    assert fit.models == 5 and lines.own["Sketch"].slope == fit.slope
    curves = Curves("ID", None, [s.name for s in world_experiment.shifts], [0.0, 1.0],
                    {"ID": {0.0: 0.6, 1.0: 0.9}, **{s.name: {0.0: 0.7, 1.0: 0.6} for s in world_experiment.shifts}},
                    counts={"ID": (700, 700), **{s.name: (500, 500) for s in world_experiment.shifts}})
    table = experiment_robustness(world_experiment, curves)
    expected = 0.7 - 1 / (1 + np.exp(-(intercept + slope * logit(0.6))))
    assert table is not None and table.loc[0.0, "Sketch"] == pytest.approx(expected, abs=1e-9)
    overlay = reference_overlay(curves, "Sketch", lines)
    names = [t.name for t in overlay.traces]
    assert f"{FAMILY_TYPE} (5)" in names and "demo family line (standard classifiers)" in names
    assert "family" in overlay.help and f"slope {fit.slope:.4f}" in overlay.help
    cards = robustness_cards(curves, 0.0, lines)
    assert cards is not None and "demo's family of standard classifiers" in cards[0].help
    assert cards[0].value.startswith(f"{100 * expected_avg(lines, curves):+.1f}")


def expected_avg(lines, curves) -> float:
    """The shift average's effective robustness at alpha 0 by its definition: the mean shift accuracy minus the
    mean of the shifts' lines at the ID accuracy."""
    line = np.mean([fit.at(curves.top1("ID", 0.0)) for fit in lines.average.fits])
    return float(np.mean([curves.top1(s, 0.0) for s in curves.shift_sets]) - line)
