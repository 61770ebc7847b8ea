"""The robustness testbed in the Explorer of an ImageNet-preset experiment (fake layouts): the overlay with the
fit's slope and intercept in its help, effective-robustness cards, the results table and the JSONL keys."""

from __future__ import annotations

import json

import pytest
from fake_datasets import fake_imagenet_layout

from wiseft_explorer.experiment import parse_experiment
from wiseft_explorer.presentation import (
    LINE_NAME,
    TESTBED_GROUP,
    metric_cards,
    plot_table,
    reference_overlay,
    results_table,
    robustness_cards,
)
from wiseft_explorer.results import (
    Curves,
    experiment_axes,
    reference_lines,
    robustness_rows,
    robustness_table,
    standard_line,
)

ALPHAS = [0.0, 0.5, 1.0]


@pytest.fixture
def preset_experiment(tmp_path):
    sets = {key: fake_imagenet_layout(tmp_path / key, key) for key in ("imagenet", "imagenet-v2", "imagenet-r")}
    table = {"zeroshot": {"model": "m"}, "classes": {"names": "imagenet"},
             "id": {"name": "ImageNet", "preset": "imagenet", "source": str(sets["imagenet"])},
             "shifts": [{"name": "V2", "preset": "imagenet-v2", "source": str(sets["imagenet-v2"])},
                        {"name": "R", "preset": "imagenet-r", "source": str(sets["imagenet-r"])}]}
    return parse_experiment(table, tmp_path)


def _curves(restricted: bool = False) -> Curves:
    curves = Curves("ImageNet", None, ["V2", "R"], ALPHAS,
                    {"ImageNet": {0.0: 0.63, 0.5: 0.76, 1.0: 0.77}, "V2": {0.0: 0.56, 0.5: 0.66, 1.0: 0.65},
                     "R": {0.0: 0.69, 0.5: 0.71, 1.0: 0.56}},
                    counts={"ImageNet": (1000, 1000), "V2": (1000, 1000), "R": (200, 200)})
    if restricted:
        curves.id_on_classes, curves.id_on_classes_counts = {"R": {0.0: 0.8, 0.5: 0.9, 1.0: 0.91}}, {"R": 200}
    return curves


def test_an_imagenet_preset_experiment_gets_the_overlay_with_its_fit_in_the_help(preset_experiment):
    axes = experiment_axes(preset_experiment)
    assert [(a.set_name, a.preset) for a in axes] == [("V2", "imagenet-v2"), ("R", "imagenet-r")]
    lines = reference_lines(axes, "logit")
    overlay = reference_overlay(_curves(), "V2", lines)
    fit = standard_line("val", "imagenetv2-matched-frequency")
    assert f"slope {fit.slope:.4f}" in overlay.help and f"intercept {fit.intercept:.4f}" in overlay.help
    assert "338" in overlay.help and "bootstrap" in overlay.help
    names = [t.name for t in overlay.traces]
    assert LINE_NAME in names and any(n.startswith("testbed: Standard training (87)") for n in names)
    assert all(t.legendgroup == TESTBED_GROUP for t in overlay.traces)
    # R without ImageNet-on-R's-classes: against all of ImageNet, and the help says so
    assert "has not measured that" in reference_overlay(_curves(), "R", lines).help
    # ... with it: R's own axes, and the path's x is that restricted accuracy
    restricted = reference_overlay(_curves(True), "R", reference_lines(axes, "probit"))
    own = standard_line("val-on-imagenet-r-classes", "imagenet-r", "probit")
    assert f"slope {own.slope:.4f}" in restricted.help
    table, moved = plot_table(_curves(True), "R", lines)
    assert moved and list(table["ImageNet"]) == [0.8, 0.9, 0.91]
    average = reference_overlay(_curves(), "avg_shifts", reference_lines(axes, "linear"))
    assert "mean of the shifts' lines" in average.help and average.help.count("slope") == 2


def test_effective_robustness_cards_table_and_jsonl(preset_experiment):
    lines = reference_lines(experiment_axes(preset_experiment))
    curves = _curves()
    row = robustness_cards(curves, 0.5, lines)
    assert row is not None and [c.label for c in row] == [
        "Effective robustness at α = 0.5", "Effective robustness, zero-shot (α = 0)",
        "Effective robustness, fine-tuned (α = 1)"]
    assert row[0].value.endswith("pts ± " + row[0].value.split("± ")[1]) and "V2:" in row[0].help
    assert robustness_cards(curves, 0.37, lines) is None  # off the grid: no counts for a line's error
    assert len(metric_cards(curves, 0.5, curves.accuracies(0.5))) == 2  # the accuracy rows are unchanged
    shown = results_table(curves, lines)
    assert {"ER V2", "ER R", "ER avg_shifts"} <= set(shown.columns)
    rows = [json.loads(json.dumps(r)) for r in curves.jsonl_rows(robustness_rows(robustness_table(curves, lines)))]
    assert {"V2:effective_robustness", "R:effective_robustness", "avg_shifts:effective_robustness"} <= set(rows[1])
    assert rows[1]["V2:effective_robustness"] == pytest.approx(float(shown.loc["0.50", "ER V2"]) / 100, abs=5e-4)


def test_the_demo_gets_no_testbed():
    from wiseft_explorer.experiment import DEFAULT_EXPERIMENT, load_experiment

    assert experiment_axes(load_experiment(DEFAULT_EXPERIMENT)) == []
