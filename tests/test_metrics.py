"""Metrics beyond top-1 (results.metrics) against hand computations from their definitions, and their flow into
curves, intervals, paired errors and the JSONL keys."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from wiseft_explorer.evaluation import SweepResult
from wiseft_explorer.evaluation.sweep_result import scored
from wiseft_explorer.results import Curves, compare_to_ends
from wiseft_explorer.results.metrics import MACRO_F1, PM10, TOP1_METRIC, WORST_REGION, SetMetric


def hand_macro_f1(pred, labels):
    """WILDS' F1: sklearn f1_score(average='macro', labels=unique(y_true)), written out per class."""
    scores = []
    for c in sorted(set(labels)):
        tp = sum(p == c and y == c for p, y in zip(pred, labels, strict=True))
        fp = sum(p == c and y != c for p, y in zip(pred, labels, strict=True))
        fn = sum(p != c and y == c for p, y in zip(pred, labels, strict=True))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def test_macro_f1_is_wilds_f1_over_the_classes_present_in_the_labels():
    labels = np.array([0, 0, 1, 1, 2, 4, 4, 4])
    pred = np.array([0, 1, 1, 1, 3, 4, 0, 4])  # class 3 is predicted but absent from the labels: not averaged
    metric = SetMetric(MACRO_F1, labels=labels)
    got = metric.value(pred, pred == labels, np.arange(8))
    assert got == pytest.approx(hand_macro_f1(pred.tolist(), labels.tolist()))
    assert got == pytest.approx((0.5 + 0.8 + 0 + 0.8) / 4)  # classes 0, 1, 2, 4: 2 TP / (labelled + predicted)
    # On a part of the set (rows `index`), only those images count.
    part = np.array([1, 2, 5])
    assert metric.value(pred[part], None, part) == pytest.approx(hand_macro_f1(pred[part].tolist(),
                                                                                labels[part].tolist()))


def test_worst_region_accuracy_leaves_out_other_and_empty_regions():
    labels = np.zeros(7, dtype=np.int64)
    pred = np.array([0, 0, 1, 0, 1, 1, 1])
    groups = np.array([0, 0, 0, 1, 1, -1, -1])  # region 2 has no image; -1 is "Other", always wrong here
    metric = SetMetric(WORST_REGION, labels=labels, groups=groups)
    assert metric.value(pred, pred == labels, np.arange(7)) == pytest.approx(min(2 / 3, 1 / 2))
    assert metric.value(pred[:3], None, np.arange(3)) == pytest.approx(2 / 3)


def test_pm_k_counts_an_anchor_only_when_every_frame_of_it_is_right():
    # Anchors: frames (0, 1, 2), (3, 4) and (5,); frame 1 accepts label 7 as well as its first label 2.
    frames = np.array([[0, 1, 2], [3, 4, -1], [5, -1, -1]])
    right = np.array([[2, -1], [2, 7], [2, -1], [1, -1], [1, -1], [0, -1]])
    metric = SetMetric(PM10, frames=frames, right=right)
    pred = np.array([2, 7, 2, 1, 0, 0])
    assert metric.units(pred, None, np.arange(6)).tolist() == [True, False, True]
    assert metric.value(pred, None, np.arange(6)) == pytest.approx(2 / 3)
    # While frames stream in, only anchors whose every frame is evaluated count.
    assert metric.units(pred[[0, 3, 5]], None, np.array([0, 3, 5])).tolist() == [True]


def test_the_bootstrap_is_seeded_and_its_interval_holds_the_value():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 300)
    pred = np.where(rng.random(300) < 0.6, labels, rng.integers(0, 5, 300))
    metric = SetMetric(MACRO_F1, labels=labels)
    draws = metric.bootstrap(pred, np.arange(300))
    assert np.array_equal(draws, metric.bootstrap(pred, np.arange(300)))
    value = metric.value(pred, None, np.arange(300))
    low, high = np.percentile(draws, [2.5, 97.5])
    assert low < value < high and 0.02 < high - low < 0.3


def _result(metric: SetMetric, labels: torch.Tensor, preds: dict[float, torch.Tensor]) -> SweepResult:
    n = len(labels)
    by_alpha = {a: scored(p, labels, torch.arange(n), n) for a, p in preds.items()}
    top = {a: scored(p, labels, torch.arange(n), n) for a, p in preds.items()}
    return SweepResult("ID", None, ["Cams"], sorted(preds), set_metrics={"Cams": metric},
                       predictions={"ID": top, "Cams": by_alpha})


def test_a_sweep_mixes_metrics_through_curves_intervals_errors_and_jsonl(tmp_path):
    rng = np.random.default_rng(0)
    labels = torch.from_numpy(rng.integers(0, 6, 400))
    preds = {a: torch.where(torch.from_numpy(rng.random(400) < 0.3 + 0.4 * a), labels,
                            torch.from_numpy(rng.integers(0, 6, 400))) for a in (0.0, 0.5, 1.0)}
    metric = SetMetric(MACRO_F1, labels=labels.numpy())
    result = _result(metric, labels, preds)
    for a, pred in preds.items():
        assert result.top1s["Cams"][a] == pytest.approx(hand_macro_f1(pred.tolist(), labels.tolist()))
        assert result.top1s["ID"][a] == pytest.approx(float((pred == labels).float().mean()))  # top-1 unchanged
        low, high = result.interval("Cams", a)
        assert low < result.top1s["Cams"][a] < high
    assert result.metric("Cams") == MACRO_F1 and result.metric("ID") == "top1"
    assert result.metric("avg_shifts") == MACRO_F1
    table = compare_to_ends(result, 0.5)
    diff = result.top1s["Cams"][0.5] - result.top1s["Cams"][0.0]
    assert table.loc["Cams", "vs_zeroshot"] == pytest.approx(diff)
    assert table.loc["Cams", "vs_zeroshot_low"] < diff < table.loc["Cams", "vs_zeroshot_high"]
    assert not math.isnan(table.loc["Cams", "vs_zeroshot_se"])
    rows = [json.loads(line) for line in result.write_jsonl(tmp_path / "r.jsonl").read_text().splitlines()]
    assert {"ID:top1", "Cams:F1-macro_all", "avg_shifts:F1-macro_all"} <= set(rows[0])
    back = Curves.from_json(result.curves().to_json())
    assert back.metrics == {"Cams": MACRO_F1} and back.top1s == result.top1s


def test_top1_sets_keep_their_numbers_and_keys():
    labels = torch.tensor([0, 1, 1, 0])
    result = _result(TOP1_METRIC, labels, {0.0: torch.tensor([0, 1, 0, 0]), 1.0: torch.tensor([0, 1, 1, 0])})
    assert result.metrics == {} and result.top1s["Cams"] == {0.0: 0.75, 1.0: 1.0}
    assert "Cams:top1" in result.jsonl_rows()[0] and "avg_shifts:top1" in result.jsonl_rows()[0]
    assert Curves.from_json(json.dumps({**json.loads(result.curves().to_json())} | {"metrics": {}})).metrics == {}
