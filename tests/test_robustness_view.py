"""The robustness testbed in the Explorer of an ImageNet-preset experiment (fake layouts): the overlay with the
fit's slope and intercept in its help, effective-robustness cards, the results table and the JSONL keys."""

from __future__ import annotations

import json

import pytest
import torch
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
    # a merge method's point is not on the line's curves: no card may show WiSE-FT's value beside it
    assert robustness_cards(curves, 0.5, lines, merged=True) is None
    assert len(metric_cards(curves, 0.5, curves.accuracies(0.5))) == 2  # the accuracy rows are unchanged
    shown = results_table(curves, lines)
    assert {"ER V2", "ER R", "ER avg_shifts"} <= set(shown.columns)
    rows = [json.loads(json.dumps(r)) for r in curves.jsonl_rows(robustness_rows(robustness_table(curves, lines)))]
    assert {"V2:effective_robustness", "R:effective_robustness", "avg_shifts:effective_robustness"} <= set(rows[1])
    assert rows[1]["V2:effective_robustness"] == pytest.approx(float(shown.loc["0.50", "ER V2"]) / 100, abs=5e-4)


def test_the_demo_gets_the_family_not_the_testbed():
    from wiseft_explorer.experiment import DEFAULT_EXPERIMENT, load_experiment

    axes = experiment_axes(load_experiment(DEFAULT_EXPERIMENT))  # the shipped family.json's line
    assert len(axes) == 5 and not any(a.source.is_testbed for a in axes)


def test_the_sweep_measures_imagenet_on_each_shifts_classes_from_one_pass(tiny, tmp_path):
    """The ID set's logits scored as R (masked to its 200 classes) and ObjectNet (max over each group) score them,
    on the ID images of those classes: equal to the definition written out on the in-memory logits."""
    from fake_datasets import fake_objectnet
    from libkit import set_images
    from test_presets import _preset_experiment

    from wiseft_explorer.evaluation import ExperimentRuntime, predict_logits, run_sweep, write_results
    from wiseft_explorer.results import curve_robustness

    sets = (f'[id]\nname = "ImageNet"\npreset = "imagenet"\nlimit = 300\n'
            f'source = "{fake_imagenet_layout(tmp_path / "val", "imagenet")}"\n'
            f'[[shifts]]\nname = "R"\npreset = "imagenet-r"\nsource = "{fake_imagenet_layout(tmp_path / "r", "imagenet-r")}"\n'
            f'[[shifts]]\nname = "ObjectNet"\npreset = "objectnet"\nsource = "{fake_objectnet(tmp_path)}"\n')
    toml = _preset_experiment(tmp_path, tiny, "imagenet", sets)
    toml.write_text(toml.read_text().replace("batch_size = 4", "batch_size = 250"))
    runtime = ExperimentRuntime.from_path(toml)
    result = run_sweep(runtime, [0.0, 1.0])
    id_ev, images = runtime.eval_set("ImageNet"), set_images(runtime, "ImageNet")
    r_classes, groups = runtime.eval_set("R").class_indices, runtime.eval_set("ObjectNet").groups
    for alpha in (0.0, 1.0):
        logits = predict_logits(runtime.classifier_at(runtime.new_working(), alpha), images, runtime.device)
        in_r = torch.isin(id_ev.labels, r_classes)
        masked = torch.full_like(logits, float("-inf"))
        masked[:, r_classes] = logits[:, r_classes]
        right_r = int((masked[in_r].argmax(-1) == id_ev.labels[in_r]).sum())
        assert result.id_on_classes["R"][alpha] == right_r / int(in_r.sum())
        assert result.id_on_classes_counts["R"] == int(in_r.sum()) > 0
        # ObjectNet: an image of one of a group's classes is right when its group has the highest max-logit
        group_of = {c: k for k, g in enumerate(groups) for c in g}
        rows = [i for i, label in enumerate(id_ev.labels.tolist()) if label in group_of]
        best = torch.stack([logits[rows][:, list(g)].amax(-1) for g in groups], dim=1).argmax(-1)
        right = [b == group_of[id_ev.labels[i].item()] for i, b in zip(rows, best.tolist(), strict=True)]
        assert result.id_on_classes["ObjectNet"][alpha] == sum(right) / len(right)
        assert result.id_on_classes_counts["ObjectNet"] == len(rows) > 0
    # ... kept with the stored curves and read back from the cache without a second pass
    again = run_sweep(ExperimentRuntime.from_path(toml), [0.0, 1.0])
    assert again.id_on_classes == result.id_on_classes and again.provenance == result.provenance
    # The JSONL carries each shift's effective robustness on the testbed's axes, and the average's
    jsonl, _ = write_results(runtime, result, tmp_path / "results.jsonl")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    lines = reference_lines(experiment_axes(runtime.experiment))
    for row in rows:
        expected = curve_robustness(result, lines, row["alpha"])
        assert {k: row[f"{k}:effective_robustness"] for k in ("R", "ObjectNet", "avg_shifts")} == pytest.approx(
            {k: expected[k].value for k in ("R", "ObjectNet", "avg_shifts")}, abs=1e-12)


def test_the_lesson_explains_effective_robustness_with_the_experiments_numbers(preset_experiment):
    from wiseft_explorer.presentation import lesson_steps
    from wiseft_explorer.results import curve_robustness

    lines = reference_lines(experiment_axes(preset_experiment))
    curves = _curves()
    steps = lesson_steps(curves, None, lines)
    assert [s.slug for s in steps][-2:] == ["effective-robustness", "try-it"] and len(steps) == 7
    at_half = curve_robustness(curves, lines, 0.5)["avg_shifts"].value
    assert f"WiSE-FT at α = 0.5 {100 * at_half:+.1f} points" in steps[-2].text
    assert len(lesson_steps(curves)) == 6  # no line (the demo): the six steps as before


def test_the_cli_prints_effective_robustness_or_why_not(preset_experiment, capsys, tmp_path):
    import dataclasses

    from wiseft_explorer.cli.commands import _print_robustness
    from wiseft_explorer.experiment import DEFAULT_EXPERIMENT, load_experiment

    _print_robustness(preset_experiment, _curves())
    out = capsys.readouterr().out
    assert out.startswith("effective robustness (points)") and "avg_shifts" in out and "V2" in out
    demo = load_experiment(DEFAULT_EXPERIMENT)  # world sets without the demo family's file beside the checkpoint
    elsewhere = dataclasses.replace(demo.zeroshot, pretrained=str(tmp_path / "zeroshot.safetensors"))
    _print_robustness(dataclasses.replace(demo, zeroshot=elsewhere), _curves())
    captured = capsys.readouterr()
    assert captured.out == "" and "effective robustness: none" in captured.err and "ImageNet" in captured.err
