"""Paired differences against the endpoints: values from the sweep's own predictions, errors from the image pairs."""

from __future__ import annotations

import math

import pytest
import torch
from libkit import shared_runtime

from wiseft_explorer.evaluation import SweepResult, run_sweep
from wiseft_explorer.evaluation.sweep_result import scored
from wiseft_explorer.results import (
    AVG_ROW,
    MIN_DISAGREEING,
    Curves,
    compare_to_ends,
    endpoint_errors,
    format_comparison,
    newcombe_interval,
    paired_counts,
    paired_difference,
    wilson_interval,
)


def test_paired_difference_is_the_mean_and_standard_error_of_per_image_differences():
    a = torch.tensor([1, 1, 0, 0, 1, 0, 1, 1] * 3, dtype=torch.bool)
    b = torch.tensor([1, 0, 0, 0, 0, 1, 1, 0] * 3, dtype=torch.bool)
    delta, se = paired_difference(a, b)
    d = [0, 1, 0, 0, 1, -1, 0, 1] * 3  # 12 images disagree
    mean = sum(d) / 24
    assert delta == pytest.approx(mean)
    assert se == pytest.approx(math.sqrt(sum((x - mean) ** 2 for x in d) / 23) / math.sqrt(24))
    with pytest.raises(ValueError, match="1-D correctness vectors"):
        paired_difference(a, b[:4])


def test_no_standard_error_while_few_images_disagree():
    # The first round scores 16 images per set: when none disagree yet the error would read "± 0.0".
    a = torch.tensor([1] * 10 + [0] * 6, dtype=torch.bool)
    delta, se = paired_difference(a, a)
    assert delta == 0.0 and math.isnan(se)
    b = a.clone()
    b[:MIN_DISAGREEING - 1] = ~b[:MIN_DISAGREEING - 1]  # one short of enough disagreements
    assert math.isnan(paired_difference(a, b)[1])
    longer_a, longer_b = torch.cat([a, a]), torch.cat([b, ~a[:1], a[1:]])  # now MIN_DISAGREEING do
    assert paired_difference(longer_a, longer_b)[1] > 0
    assert math.isnan(paired_difference(a[:1], b[:1])[1])
    # ... while Newcombe's interval is honest at that size: no image disagrees, and still +-12 points.
    low, high = newcombe_interval(*paired_counts(a, a))
    assert low == pytest.approx(-high) and 0.1 < high < 0.2


def _wilson(x: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson's score interval, from its definition: the p whose score |x/n - p| / sqrt(p(1-p)/n) equals z."""
    # (x/n - p)^2 = z^2 p (1 - p) / n  ->  (1 + z^2/n) p^2 - (2x/n + z^2/n) p + (x/n)^2 = 0
    qa, qb, qc = 1 + z * z / n, -(2 * x / n + z * z / n), (x / n) ** 2
    root = math.sqrt(qb * qb - 4 * qa * qc)
    return (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)


@pytest.mark.parametrize("table", [(8, 5, 1, 2), (20, 1, 3, 0), (10, 0, 0, 6), (0, 3, 4, 0), (30, 2, 2, 30)])
def test_newcombe_interval_is_method_10_of_newcombe_1998(table):
    # Newcombe (1998), Stat Med 17:2635, method 10: with e = both + only_a, f = only_b + neither,
    # g = both + only_b, h = only_a + neither the margins, Wilson intervals (l1, u1) of p1 = e/n and (l2, u2) of
    # p2 = g/n, and phi = C / sqrt(efgh), where C = ad - bc less n/2 if ad - bc > n/2, 0 if 0 <= ad - bc <= n/2,
    # ad - bc if negative (phi = 0 when a margin is 0):
    # L = p1 - p2 - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2),
    # U = p1 - p2 + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2).
    a, b, c, d = table
    n = a + b + c + d
    e, f, g, h = a + b, c + d, a + c, b + d
    p1, p2 = e / n, g / n
    (l1, u1), (l2, u2) = _wilson(e, n), _wilson(g, n)
    ad_bc = a * d - b * c
    corrected = ad_bc - n / 2 if ad_bc > n / 2 else (0 if ad_bc >= 0 else ad_bc)
    phi = corrected / math.sqrt(e * f * g * h) if e * f * g * h else 0
    low = p1 - p2 - math.sqrt((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2)
    high = p1 - p2 + math.sqrt((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2)
    assert newcombe_interval(a, b, c, d) == pytest.approx((low, high), abs=1e-12)
    assert low <= p1 - p2 <= high


def test_paired_counts():
    a = torch.tensor([1, 1, 0, 0, 1], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0, 1], dtype=torch.bool)
    assert paired_counts(a, b) == (2, 1, 1, 1)


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


def _disagreeing_result() -> SweepResult:
    """A sweep of 200 images per set whose models disagree on many of them (the tiny models never do)."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.zeros(200, dtype=torch.long)
    predictions = {}
    for name in ("ID", "Sketch", "Cartoon"):
        predictions[name], hard = {}, torch.rand(200, generator=gen)  # how hard each image is, for every alpha
        for alpha in (0.0, 0.5, 1.0):
            noise = 0.5 * torch.rand(200, generator=gen)
            pred = (hard + noise > 0.6 + 0.3 * alpha).long()  # right where 0
            predictions[name][alpha] = scored(pred, labels, torch.arange(200), 200)
    return SweepResult("ID", None, ["Sketch", "Cartoon"], [0.0, 0.5, 1.0], predictions=predictions)


def test_compare_to_ends_matches_the_accuracy_table():
    result = _disagreeing_result()
    table = compare_to_ends(result, 0.5)
    top1 = result.table()
    for name in result.predictions:
        row = table.loc[name]
        assert row["vs_zeroshot"] == pytest.approx(top1.loc[0.5, name] - top1.loc[0.0, name], abs=1e-6)
        assert row["vs_finetuned"] == pytest.approx(top1.loc[0.5, name] - top1.loc[1.0, name], abs=1e-6)
        assert row["n"] == 200
        here, end = result.predictions[name][0.5].correct, result.predictions[name][1.0].correct
        assert row["vs_finetuned_se"] == pytest.approx(paired_difference(here, end)[1]) and row["vs_finetuned_se"] > 0
        # A paired error never exceeds the one of two independent samples of the same accuracies.
        p0, p1 = top1.loc[0.5, name], top1.loc[1.0, name]
        assert row["vs_finetuned_se"] <= math.sqrt((p0 * (1 - p0) + p1 * (1 - p1)) / row["n"]) + 1e-9
        assert (row["vs_finetuned_low"], row["vs_finetuned_high"]) == newcombe_interval(*paired_counts(here, end))
    avg = table.loc[AVG_ROW]
    assert avg["vs_finetuned"] == pytest.approx(top1.loc[0.5, "avg_shifts"] - top1.loc[1.0, "avg_shifts"], abs=1e-6)
    shifts = result.shift_sets
    expected_se = math.sqrt(sum(table.loc[s, "vs_zeroshot_se"] ** 2 for s in shifts)) / len(shifts)
    assert avg["vs_zeroshot_se"] == pytest.approx(expected_se)
    # The average's interval: each side of the sets' intervals adds in quadrature.
    below = math.sqrt(sum((table.loc[s, "vs_zeroshot"] - table.loc[s, "vs_zeroshot_low"]) ** 2 for s in shifts))
    assert avg["vs_zeroshot_low"] == pytest.approx(avg["vs_zeroshot"] - below / len(shifts))
    text = format_comparison(table, 0.5)
    assert text.splitlines()[0].startswith("alpha 0.5 minus each end")
    assert "n=200" in text and "±" in text and "[" in text and "few differ" not in text
    # The curves carry the same errors, through their JSON copy too.
    curves = result.curves()
    for key in (*result.predictions, AVG_ROW):
        assert curves.error(key, 0.5) == pytest.approx((table.loc[key, "vs_zeroshot_se"],
                                                        table.loc[key, "vs_finetuned_se"]))
        assert curves.error(key, 0.0)[0] is None  # zero-shot against itself: no image disagrees
    assert Curves.from_json(curves.to_json()).error("Sketch", 0.5) == curves.error("Sketch", 0.5)


def test_no_error_is_shown_where_too_few_images_disagree(swept):
    # The tiny models agree on every image at every alpha: the old comparison read "+0.0 ± 0.0" everywhere.
    result, _ = swept
    table = compare_to_ends(result, 0.5)
    id_row = table.loc["ID"]
    assert math.isnan(id_row["vs_zeroshot_se"]) and id_row["vs_zeroshot_low"] < 0 < id_row["vs_zeroshot_high"]
    line = next(line for line in format_comparison(table, 0.5).splitlines() if line.strip().startswith("ID "))
    assert "(few differ)" in line and "± 0.0" not in line and "nan" not in line
    curves = result.curves()
    assert all(curves.error(key, 0.5) is None for key in (*result.predictions, AVG_ROW))
    again = Curves.from_json(curves.to_json())
    assert all(again.error(key, 0.5) is None for key in (*result.predictions, AVG_ROW))


def test_compare_needs_both_ends_in_the_grid(swept):
    result, _ = swept
    with pytest.raises(ValueError, match="no alpha 0.3"):
        compare_to_ends(result, 0.3)


def test_curves_carry_the_intervals_and_counts_through_json(swept):
    result, _ = swept
    curves = result.curves()
    again = Curves.from_json(curves.to_json())
    assert again.intervals == curves.intervals
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
