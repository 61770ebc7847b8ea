"""Gallery logic: per-image predictions at grid and off-grid alpha, and the five filters."""

from __future__ import annotations

import pytest
import torch

from wiseft_explorer.evaluation import Predictions, SweepResult, probabilities_over_grid
from wiseft_explorer.presentation import (
    apply_filter,
    filter_counts,
    gallery_frame,
    neighbours,
)

CLASSES = ["cat", "dog"]
LABELS = torch.tensor([0, 0, 1, 1, 0])
# Predicted class per image at each alpha; image 0 is fixed, 1 broken, 2 rescued at 0.5, 3 always right,
# 4 flips between 0.5 and 0.75.
PREDS = {0.0: [1, 0, 0, 1, 0], 0.25: [1, 0, 0, 1, 0], 0.5: [0, 0, 1, 1, 0], 0.75: [0, 1, 0, 1, 1],
         1.0: [0, 1, 0, 1, 1]}


def _result() -> SweepResult:
    preds = {}
    for alpha, row in PREDS.items():
        pred = torch.tensor(row)
        probs = torch.nn.functional.one_hot(pred, 2).float() * 0.8 + 0.1
        preds[alpha] = Predictions(float((pred == LABELS).float().mean()), pred, pred == LABELS,
                                   torch.arange(len(pred)), len(pred), probs)
    return SweepResult("ID", None, [], sorted(PREDS), predictions={"ID": preds})


def test_frame_reads_grid_predictions():
    frame = gallery_frame(_result(), "ID", 0.5, LABELS, CLASSES)
    assert frame["alpha"].tolist() == ["cat", "cat", "dog", "dog", "cat"]
    assert frame["zeroshot_ok"].tolist() == [False, True, False, True, True]
    assert frame["finetuned_ok"].tolist() == [True, False, False, True, False]


@pytest.mark.parametrize(("name", "expected"), [
    ("all", [0, 1, 2, 3, 4]), ("fixed", [0]), ("broken", [1, 4]), ("rescued", [0, 1, 2, 4]),
    ("changed", [0, 1, 2, 4])])
def test_filters_at_half(name, expected):
    frame = gallery_frame(_result(), "ID", 0.5, LABELS, CLASSES)
    assert apply_filter(frame, name)["index"].tolist() == expected
    assert filter_counts(frame)[name] == len(expected)


def test_changed_near_alpha_only_looks_at_neighbours():
    frame = gallery_frame(_result(), "ID", 1.0, LABELS, CLASSES)
    assert apply_filter(frame, "changed")["index"].tolist() == []
    assert neighbours(_result(), 1.0) == [0.75, 1.0]
    assert neighbours(_result(), 1.6) == [0.75, 1.0]  # extrapolation: the two nearest grid points


def test_off_grid_alpha_needs_live_predictions():
    result = _result()
    assert result.grid_alpha(0.3) is None and result.grid_alpha(0.25000001) == 0.25
    with pytest.raises(ValueError, match="not on the sweep grid"):
        gallery_frame(result, "ID", 0.3, LABELS, CLASSES)
    live = Predictions(1.0, LABELS.clone(), torch.ones(5, dtype=torch.bool), torch.arange(5), 5)
    frame = gallery_frame(result, "ID", 0.3, LABELS, CLASSES, live)
    assert frame["alpha_ok"].all()
    assert apply_filter(frame, "rescued")["index"].tolist() == [0, 1, 2, 4]


def test_partial_predictions_give_rows_for_the_images_evaluated_at_every_alpha_involved():
    # While a sweep streams, or for a live alpha evaluated on a sample, only some images have predictions.
    result = _result()
    live = Predictions(1.0, LABELS[[1, 3, 4]], torch.ones(3, dtype=torch.bool), torch.tensor([1, 3, 4]), 5)
    frame = gallery_frame(result, "ID", 0.3, LABELS, CLASSES, live)
    assert frame["index"].tolist() == [1, 3, 4] and frame["true"].tolist() == ["cat", "dog", "cat"]
    assert frame["zeroshot"].tolist() == ["cat", "dog", "cat"] and frame["finetuned"].tolist() == ["dog", "dog", "dog"]


def test_unknown_filter_is_an_error():
    with pytest.raises(ValueError, match="unknown gallery filter"):
        apply_filter(gallery_frame(_result(), "ID", 0.5, LABELS, CLASSES), "best")


def test_probabilities_over_grid():
    probs = probabilities_over_grid(_result(), "ID", 2)
    assert probs.shape == (5, 2)
    assert probs[:, 1].tolist() == pytest.approx([0.1, 0.1, 0.9, 0.1, 0.1])
    shuffled = _result()
    for preds in shuffled.predictions["ID"].values():  # rows of another subset: found by image index, not row
        preds.index, preds.probs = preds.index[2:], preds.probs[2:]
    assert torch.equal(probabilities_over_grid(shuffled, "ID", 2), probs)
    assert probabilities_over_grid(shuffled, "ID", 0) is None


def test_an_image_curve_without_stored_probabilities_is_computed_like_the_sweeps(tiny):
    import dataclasses

    from libkit import shared_runtime

    from wiseft_explorer.evaluation import image_probabilities, run_sweep

    runtime = shared_runtime(tiny)
    result = run_sweep(runtime, [0.0, 0.5, 1.0])
    stored = image_probabilities(runtime, result, "ID", 3)
    assert stored.shape == (3, len(runtime.experiment.classnames))
    for by_alpha in result.predictions.values():  # as a sweep over a large label set keeps them: no probabilities
        for alpha, preds in by_alpha.items():
            by_alpha[alpha] = dataclasses.replace(preds, probs=None)
    live = image_probabilities(runtime, result, "ID", 3)
    assert torch.allclose(live, stored, atol=2e-3)  # stored as float16
