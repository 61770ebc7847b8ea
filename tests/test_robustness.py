"""Effective robustness against the testbed's line: the fit, its bootstrap band and each alpha's distance above it,
checked against hand computations on the shipped data."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from wiseft_explorer.results import (
    STANDARD,
    TESTBED_CSV,
    TESTBED_LICENSE,
    Curves,
    curve_robustness,
    effective_robustness,
    fit_line,
    load_testbed,
    no_testbed_reason,
    preset_axes,
    reference_lines,
    robustness_table,
    standard_line,
)


def _standard_pairs(x_column: str, y_column: str) -> list[tuple[float, float]]:
    with open(TESTBED_CSV, newline="") as handle:
        return [(float(r[x_column]) / 100, float(r[y_column]) / 100) for r in csv.DictReader(handle)
                if r["type"] == STANDARD and r[x_column] and r[y_column]]


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_the_testbed_ships_with_its_licence_and_every_model():
    frame = load_testbed()
    assert len(frame) == 338 and (frame["type"] == STANDARD).sum() == 87
    assert {"vit_b_32_clip_zeroshot", "resnet50_clip_zeroshot"} <= set(frame["model"])
    assert "MIT License" in TESTBED_LICENSE.read_text() and "Taori" in TESTBED_LICENSE.read_text()


def test_logit_fit_of_v2_against_imagenet_matches_a_hand_least_squares():
    pairs = [(_logit(x), _logit(y)) for x, y in _standard_pairs("val", "imagenetv2-matched-frequency")]
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    slope = sum((x - mx) * (y - my) for x, y in pairs) / sum((x - mx) ** 2 for x, _ in pairs)
    fit = standard_line("val", "imagenetv2-matched-frequency")
    assert fit.models == len(pairs) == 87 and fit.dropped == ()
    assert fit.slope == pytest.approx(slope, abs=1e-6)
    assert fit.intercept == pytest.approx(my - slope * mx, abs=1e-6)
    # Effective robustness is y minus the line at x, read back through the inverse logit.
    x, y = 0.7, 0.65
    line = 1 / (1 + math.exp(-(fit.intercept + fit.slope * _logit(x))))
    assert effective_robustness(fit, x, y).value == pytest.approx(y - line, abs=1e-12)


def test_probit_and_linear_fits_are_least_squares_on_their_axes():
    from statistics import NormalDist

    pairs = _standard_pairs("val", "imagenet-sketch")
    for scale, f in (("probit", NormalDist().inv_cdf), ("linear", lambda p: p)):
        xs, ys = np.array([f(x) for x, _ in pairs]), np.array([f(y) for _, y in pairs])
        slope, intercept = np.polyfit(xs, ys, 1)
        fit = standard_line("val", "imagenet-sketch", scale)
        assert (fit.slope, fit.intercept) == pytest.approx((slope, intercept), abs=1e-9)


def test_the_bootstrap_band_is_reproducible_for_a_seed_and_holds_the_line():
    xs = np.linspace(0.5, 0.85, 8)
    first, again = standard_line("val", "imagenet-r", seed=3), standard_line("val", "imagenet-r", seed=3)
    other = standard_line("val", "imagenet-r", seed=4)
    assert np.array_equal(first.boot, again.boot) and np.array_equal(first.band(xs)[0], again.band(xs)[0])
    assert not np.array_equal(first.boot, other.boot)
    low, high = first.band(xs)
    assert first.boot.shape == (1000, 2) and np.all(low < first.at(xs)) and np.all(first.at(xs) < high)
    # The band is percentiles 2.5 and 97.5 of the refitted lines at x (on the logit axis, as the testbed takes
    # them on its grid), by hand at one x.
    z = _logit(0.7)
    refits = sorted(b + s * z for s, b in first.boot)
    rank = 0.025 * (len(refits) - 1)
    low_z = refits[int(rank)] + (rank - int(rank)) * (refits[int(rank) + 1] - refits[int(rank)])
    assert first.band(0.7)[0] == pytest.approx(1 / (1 + math.exp(-low_z)), abs=1e-12)


def test_a_zero_percent_row_is_left_out_of_logit_and_probit_fits_and_kept_on_linear():
    # ResNet-50 scores 0.0% on ImageNet-A (chosen against it): no logit, so the logit line leaves it out, as
    # results/robustness.py's help says.
    logit = standard_line("val-on-imagenet-a-classes", "imagenet-a", "logit")
    assert logit.dropped == ("resnet50",) and logit.models == 86
    assert standard_line("val-on-imagenet-a-classes", "imagenet-a", "probit").dropped == ("resnet50",)
    linear = standard_line("val-on-imagenet-a-classes", "imagenet-a", "linear")
    assert linear.dropped == () and linear.models == 87
    assert math.isfinite(logit.slope) and math.isfinite(logit.intercept)


def test_fit_line_refuses_too_few_points():
    with pytest.raises(ValueError, match="at least 3"):
        fit_line([0.5, 0.0], [0.4, 0.3])


def _preset_curves(id_on_classes: bool = False) -> Curves:
    alphas = [0.0, 0.5, 1.0]
    top1 = {"ImageNet": {0.0: 0.63, 0.5: 0.76, 1.0: 0.77}, "V2": {0.0: 0.56, 0.5: 0.66, 1.0: 0.65},
            "R": {0.0: 0.69, 0.5: 0.71, 1.0: 0.56}}
    curves = Curves("ImageNet", None, ["V2", "R"], alphas, top1,
                    counts={"ImageNet": (50000, 50000), "V2": (10000, 10000), "R": (30000, 30000)})
    if id_on_classes:
        curves.id_on_classes = {"R": {0.0: 0.80, 0.5: 0.90, 1.0: 0.91}}
        curves.id_on_classes_counts = {"R": 10000}
    return curves


def test_curve_robustness_per_shift_and_on_average():
    axes = preset_axes("imagenet", [("V2", "imagenet-v2"), ("R", "imagenet-r")])
    lines = reference_lines(axes)
    curves = _preset_curves()
    er = curve_robustness(curves, lines, 0.5)
    v2 = standard_line("val", "imagenetv2-matched-frequency")
    assert er["V2"].value == pytest.approx(0.66 - float(v2.at(0.76)), abs=1e-12)
    # Without ImageNet-on-R's-classes, R is measured against all of ImageNet (its line fitted on `val` too)
    r_on_val = standard_line("val", "imagenet-r")
    assert er["R"].value == pytest.approx(0.71 - float(r_on_val.at(0.76)), abs=1e-12)
    # The average: the shifts' mean minus the mean of their lines against ImageNet accuracy
    # (fitted over the standard models that have both shifts: 5 of the 87 have no ImageNet-R accuracy)
    both = load_testbed().dropna(subset=["imagenet-r"])
    average_line = (float(standard_line("val", "imagenetv2-matched-frequency", frame=both).at(0.76)) +
                    float(standard_line("val", "imagenet-r", frame=both).at(0.76))) / 2
    assert er["avg_shifts"].value == pytest.approx((0.66 + 0.71) / 2 - average_line, abs=1e-12)
    assert all(r.se is not None and 0 < r.se < 0.05 for r in er.values())
    # With it, R is measured on the testbed's axes: ImageNet restricted to R's 200 classes.
    restricted = curve_robustness(_preset_curves(True), lines, 0.5)["R"]
    assert restricted.value == pytest.approx(0.71 - float(standard_line("val-on-imagenet-r-classes",
                                                                        "imagenet-r").at(0.90)), abs=1e-12)
    table = robustness_table(curves, lines)
    assert list(table.columns) == ["V2", "R", "avg_shifts"] and list(table.index) == [0.0, 0.5, 1.0]


def test_only_imagenet_experiments_get_the_testbed():
    assert preset_axes("cifar10", [("CIFAR-10.1", "cifar10.1")]) == []
    assert preset_axes(None, [("sketches", None)]) == []
    axes = preset_axes("imagenet", [("A", "imagenet-a"), ("mine", None), ("ON", "objectnet")])
    assert [(a.set_name, a.x_column, a.restricted) for a in axes] == [
        ("A", "val-on-imagenet-a-classes", True), ("ON", "val-on-objectnet-classes", True)]
    assert "ImageNet" in no_testbed_reason(None) and "not the ImageNet preset" in no_testbed_reason(None)
