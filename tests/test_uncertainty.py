"""Paired differences against the endpoints: values from the sweep's own predictions, errors from the image pairs."""

from __future__ import annotations

import math

import pytest
import torch
from libkit import shared_runtime

from wiseft_explorer.evaluation import SweepResult, run_sweep
from wiseft_explorer.results import (
    AVG_ROW,
    Curves,
    compare_to_ends,
    endpoint_errors,
    format_comparison,
    paired_difference,
    wilson_interval,
)


def test_paired_difference_is_the_mean_and_standard_error_of_per_image_differences():
    a = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 0, 0, 1, 1, 0], dtype=torch.bool)
    delta, se = paired_difference(a, b)
    d = [0, 1, 0, 0, 1, -1, 0, 1]
    mean = sum(d) / 8
    assert delta == pytest.approx(mean)
    assert se == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in d) / 7) / math.sqrt(8))
    # Identical predictions: no difference and no error, however few the images.
    assert paired_difference(a, a) == (0.0, 0.0)
    assert math.isnan(paired_difference(a[:1], b[:1])[1])
    with pytest.raises(ValueError, match="1-D correctness vectors"):
        paired_difference(a, b[:4])


@pytest.fixture(scope="module")
def swept(tiny):
    runtime = shared_runtime(tiny)
    result = run_sweep(runtime, [0.0, 0.5, 1.0])
    labels = {name: runtime.eval_set(name).labels for name in result.predictions}
    return result, labels


def test_correctness_is_kept_per_image(swept):
    result, labels = swept
    for name, by_alpha in result.predictions.items():
        for p in by_alpha.values():
            assert torch.equal(p.correct, p.pred.eq(labels[name]))
            assert p.top1 == pytest.approx(float(p.correct.float().mean()))


def test_compare_to_ends_matches_the_accuracy_table(swept):
    result, labels = swept
    table = compare_to_ends(result, 0.5)
    top1 = result.table()
    for name in result.predictions:
        row = table.loc[name]
        assert row["vs_zeroshot"] == pytest.approx(top1.loc[0.5, name] - top1.loc[0.0, name], abs=1e-6)
        assert row["vs_finetuned"] == pytest.approx(top1.loc[0.5, name] - top1.loc[1.0, name], abs=1e-6)
        assert row["n"] == len(labels[name])
        # A paired error never exceeds the one of two independent samples of the same accuracies.
        p0, p1 = top1.loc[0.5, name], top1.loc[1.0, name]
        assert row["vs_finetuned_se"] <= math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / row["n"]) + 1e-9
    avg = table.loc[AVG_ROW]
    assert avg["vs_finetuned"] == pytest.approx(top1.loc[0.5, "avg_shifts"] - top1.loc[1.0, "avg_shifts"], abs=1e-6)
    shifts = result.shift_sets
    expected_se = math.sqrt(sum(table.loc[s, "vs_zeroshot_se"] ** 2 for s in shifts)) / len(shifts)
    assert avg["vs_zeroshot_se"] == pytest.approx(expected_se)
    text = format_comparison(table, 0.5)
    assert text.splitlines()[0].startswith("alpha 0.5 minus each end")
    assert f"n={len(labels['ID'])}" in text and "±" in text


def test_compare_needs_both_ends_in_the_grid(swept):
    result, _ = swept
    with pytest.raises(ValueError, match="no alpha 0.3"):
        compare_to_ends(result, 0.3)


def test_curves_carry_the_errors_through_json(swept):
    result, _ = swept
    curves = result.curves()
    table = compare_to_ends(result, 0.5)
    for key in (*result.predictions, AVG_ROW):
        assert curves.error(key, 0.5) == pytest.approx(
            (table.loc[key, "vs_zeroshot_se"], table.loc[key, "vs_finetuned_se"]))
        assert curves.error(key, 0.0)[0] == 0.0  # zero-shot against itself
    again = Curves.from_json(curves.to_json())
    assert again.errors == curves.errors and again.intervals == curves.intervals
    assert again.counts == curves.counts == {"ID": (18, 18), "Dark": (10, 10), "Same": (18, 18)}
    assert again.seed == curves.seed == 0
    for key in (*result.predictions, AVG_ROW):
        low, high = curves.interval(key, 0.5)
        assert low <= curves.accuracies(0.5)[key] <= high


def test_no_paired_errors_while_a_set_lacks_an_end(swept):
    result, _ = swept
    partial = SweepResult(result.id_set, result.id_val, result.shift_sets, result.alphas,
                          predictions={**result.predictions, "ID": {0.5: result.predictions["ID"][0.5]}})
    assert partial.errors == endpoint_errors(partial) == {} and result.errors != {}
    with pytest.raises(ValueError, match="no predictions at alpha 0.5 or at an end"):
        compare_to_ends(partial, 0.5)


def test_wilson_interval():
    # Known values (Wilson score, z = 1.96): 8 of 10 -> [0.4902, 0.9433]; 0 of 20 -> [0, 0.1611].
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson_interval(20, 20)[1] == 1.0 and wilson_interval(20, 20)[0] == pytest.approx(0.8389, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)  # nothing seen yet: anything is possible
    # It narrows like 1/sqrt(n) for the same accuracy.
    wide, narrow = wilson_interval(30, 40), wilson_interval(3000, 4000)
    assert (wide[1] - wide[0]) / (narrow[1] - narrow[0]) == pytest.approx(10, rel=0.1)
