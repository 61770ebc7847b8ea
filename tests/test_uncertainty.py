"""Paired differences against the endpoints: values from the sweep's own predictions, errors from the image pairs."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from libkit import shared_runtime

from wiseft_explorer.curves import Curves
from wiseft_explorer.sweep import run_sweep
from wiseft_explorer.uncertainty import (
    AVG_ROW,
    compare_to_ends,
    endpoint_errors,
    format_comparison,
    paired_difference,
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
    assert again.errors == curves.errors
    # A file written before errors were stored still loads, with none.
    old = curves.to_json().replace('"errors"', '"unused"')
    assert Curves.from_json(old).error("ID", 0.5) is None


def test_no_errors_without_per_image_correctness(swept):
    result, _ = swept
    stripped = copy.deepcopy(result)
    stripped.predictions["ID"][0.5].correct = None
    assert endpoint_errors(stripped) == {}
    with pytest.raises(ValueError, match="clear the cache"):
        compare_to_ends(stripped, 0.5)
