"""The alpha sweep: subset-class restriction, the on-disk cache (second sweep computes nothing), JSONL, alpha choice."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from libkit import shared_runtime, write_experiment
from tiny import CLASSES

import wiseft_explorer.evaluation.runtime as runtime_module
from wiseft_explorer.data import preprocess_set, restrict_logits
from wiseft_explorer.evaluation import (
    ExperimentRuntime,
    Predictions,
    SweepResult,
    predict_logits,
    run_sweep,
    summarise,
)
from wiseft_explorer.evaluation.sweep_result import entry_predictions, entry_tensors, scored
from wiseft_explorer.results import ALPHA_GRID, PAPER_ALPHA, Curves, alpha_choices, choose_alphas
from wiseft_explorer.store import CacheWarning, DiskCache

ALPHAS = [0.0, 0.5, 1.0]


@dataclass
class Study:
    """A generated experiment swept once into its own cache."""

    toml: Path
    cache_dir: Path
    result: SweepResult
    excluded: int  # the class the zero-shot model predicts most, left out of the "Sub" set
    progress: list
    writes: int
    misses: int


@pytest.fixture(scope="module")
def study(tiny, tmp_path_factory) -> Study:
    """Sweep an experiment whose 'Sub' shift set leaves out the class the zero-shot model favours."""
    shared = shared_runtime(tiny)
    id_images = preprocess_set(shared.eval_set("ID"), shared.preprocess)
    zs_pred = predict_logits(shared.models.zeroshot, id_images, shared.device).argmax(-1)
    excluded = int(zs_pred.mode().values)
    subset = [c for i, c in enumerate(CLASSES) if i != excluded]
    folder = tmp_path_factory.mktemp("study")
    toml = write_experiment(folder, tiny, shifts=[
        {"name": "Dark", "source": str(tiny.shift_dir), "classes": CLASSES[:2]},
        {"name": "Sub", "source": str(tiny.id_dir), "classes": subset}])
    runtime = ExperimentRuntime.from_path(toml)
    cache = DiskCache(runtime.experiment.cache_dir)
    calls = []
    result = run_sweep(runtime, ALPHAS, cache=cache, on_progress=lambda progress, snapshot: calls.append(progress))
    return Study(toml, runtime.experiment.cache_dir, result, excluded, calls, cache.writes, cache.misses)


def test_first_sweep_computes_every_entry_and_reports_progress(study):
    assert study.writes == study.misses == 3  # one entry per set, holding every alpha
    images = 18 + 10 + 12  # ID, Dark (2 of 3 classes), Sub (2 of 3 classes): each image is counted once
    done = [p.done for p in study.progress]
    assert done == sorted(done) and done[-1] == images and all(p.total == images for p in study.progress)
    # One batch per set in the first round, then every alpha is known for every set.
    assert [p.first_round for p in study.progress][:3] == [False, False, True]
    assert study.progress[-1].line().startswith("40 of 40 images (100%)")
    assert study.result.alphas == ALPHAS and study.result.shift_sets == ["Dark", "Sub"]
    assert study.result.complete and study.result.counts == {"ID": (18, 18), "Dark": (10, 10), "Sub": (12, 12)}


def test_second_sweep_computes_nothing(study, monkeypatch):
    runtime = ExperimentRuntime.from_path(study.toml)
    cache = DiskCache(study.cache_dir)
    again = run_sweep(runtime, ALPHAS, cache=cache)
    assert cache.hits == 3 and cache.misses == 0 and cache.writes == 0
    # No model was loaded, no weight space built and no image decoded.
    assert "models" not in vars(runtime) and "space" not in vars(runtime) and not runtime._sets
    for name, by_alpha in study.result.predictions.items():
        for alpha, preds in by_alpha.items():
            cached = again.predictions[name][alpha]
            assert cached.top1 == preds.top1 and torch.equal(cached.pred, preds.pred)
            assert torch.equal(cached.index, preds.index) and torch.equal(cached.correct, preds.correct)
            assert torch.equal(cached.probs, preds.probs)
    # Also through the default cache of the experiment, with model loading made impossible.
    monkeypatch.setattr(runtime_module, "load_models", lambda exp: pytest.fail("a cached sweep loaded the models"))
    fresh = ExperimentRuntime.from_path(study.toml)
    assert run_sweep(fresh, ALPHAS).table().equals(study.result.table())


def test_shift_set_with_classes_never_predicts_outside_them(study, tiny):
    runtime = ExperimentRuntime.from_path(study.toml)
    sub = runtime.eval_set("Sub")
    allowed = sorted(set(range(len(CLASSES))) - {study.excluded})
    assert sub.class_indices.tolist() == allowed
    assert len(sub) == 12 and set(sub.labels.tolist()) == set(allowed)  # the folder's other class is left out
    images = preprocess_set(sub, runtime.preprocess)
    for alpha in ALPHAS:
        preds = study.result.predictions["Sub"][alpha]
        assert set(preds.pred.tolist()) <= set(allowed) and preds.index.tolist() == list(range(12))
        assert preds.probs.shape == (12, 3) and float(preds.probs[:, study.excluded].abs().max()) == 0.0
        model = runtime.classifier_at(runtime.new_working(), alpha)
        logits = predict_logits(model, images, runtime.device)
        restricted = logits[:, allowed].argmax(-1)
        expected_pred = torch.tensor(allowed)[restricted]
        assert torch.equal(preds.pred.long(), expected_pred)
        assert preds.top1 == pytest.approx(float((expected_pred == sub.labels).float().mean()))
        if alpha == 0.0:  # the restriction matters: unrestricted, the model picks the left-out class
            assert (logits.argmax(-1) == study.excluded).any()


def test_restrict_logits_and_summarise():
    logits = torch.tensor([[5.0, 1.0, 2.0, 0.0], [0.0, 3.0, 9.0, 1.0]])
    masked = restrict_logits(logits, torch.tensor([1, 3]))
    assert torch.equal(masked[:, [1, 3]], logits[:, [1, 3]]) and torch.isinf(masked[:, [0, 2]]).all()
    assert restrict_logits(logits, None) is logits
    preds = summarise(logits, torch.tensor([1, 3]), torch.tensor([1, 3]), probs=True)
    assert preds.pred.tolist() == [1, 1] and preds.top1 == 0.5  # unrestricted argmax would be [0, 2]
    assert preds.correct.tolist() == [True, False] and preds.index.tolist() == [0, 1] and preds.total == 2
    assert torch.allclose(preds.probs.sum(-1), torch.ones(2)) and float(preds.probs[:, [0, 2]].max()) == 0.0
    full = summarise(logits, torch.tensor([0, 0]), None)
    assert full.pred.tolist() == [0, 2] and full.top1 == 0.5 and full.probs is None


def test_jsonl_rows_use_the_paper_keys(study, tmp_path):
    path = study.result.write_jsonl(tmp_path / "out" / "results.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["alpha"] for r in rows] == ALPHAS
    table = study.result.table()
    for row in rows:
        assert set(row) == {"alpha", "ID:top1", "Dark:top1", "Sub:top1", "avg_shifts:top1", "id_set", "shift_sets",
                            "seed", "images"}
        assert row["id_set"] == "ID" and row["shift_sets"] == ["Dark", "Sub"]
        assert row["seed"] == 0 and row["images"] == {"ID": 18, "Dark": 10, "Sub": 12}
        assert row["avg_shifts:top1"] == pytest.approx((row["Dark:top1"] + row["Sub:top1"]) / 2)
        assert row["ID:top1"] == pytest.approx(table.loc[row["alpha"], "ID"])
        assert row["Sub:top1"] == study.result.top1("Sub", row["alpha"])
    assert not list(path.parent.glob(".*.tmp"))  # written through a temporary file and renamed


def test_corrupt_cache_entry_is_recomputed_with_a_warning(study, tmp_path):
    cache_dir = tmp_path / "cache"
    shutil.copytree(study.cache_dir, cache_dir)
    entries = sorted(cache_dir.glob("*.safetensors"))
    assert len(entries) == 3
    victim = entries[0]
    victim.write_bytes(victim.read_bytes()[:100])
    cache = DiskCache(cache_dir)
    runtime = ExperimentRuntime.from_path(study.toml)
    with pytest.warns(CacheWarning, match=f"{victim.name} is unreadable"):
        again = run_sweep(runtime, ALPHAS, cache=cache)
    assert cache.writes == 1 and cache.hits == len(entries) - 1
    assert again.table().equals(study.result.table())
    assert DiskCache(cache_dir).get_entry(victim.stem) is not None  # the rewritten entry is good again


def test_cache_keys_follow_content(study, tiny, tmp_path):
    base = ExperimentRuntime.from_path(study.toml).fingerprint
    policy = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, head_policy="zeroshot")).fingerprint
    assert policy["head_policy"] == "zeroshot" and policy["finetuned"] == base["finetuned"]
    copy = tmp_path / "ft.safetensors"
    shutil.copy(tiny.finetuned, copy)
    same = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, name="b.toml", finetuned=copy)).fingerprint
    assert same["finetuned"] == base["finetuned"]  # content, not path
    copy.write_bytes(copy.read_bytes()[:-1] + b" ")
    changed = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, name="c.toml", finetuned=copy)).fingerprint
    assert changed["finetuned"] != base["finetuned"]


def fake_result(id_val: str | None, tops: dict[str, list[float]], alphas: list[float]) -> SweepResult:
    def preds(top1: float) -> Predictions:
        return Predictions(top1, torch.zeros(1, dtype=torch.long), torch.ones(1, dtype=torch.bool),
                           torch.zeros(1, dtype=torch.long), 1)
    shifts = [n for n in tops if n not in ("ID", id_val)]
    return SweepResult("ID", id_val, shifts, alphas, predictions={
        name: {a: preds(v) for a, v in zip(alphas, values, strict=True)} for name, values in tops.items()})


def test_choose_alphas():
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    result = fake_result("ID-val", {"ID": [0.1, 0.2, 0.3, 0.4, 0.9], "ID-val": [0.1, 0.6, 0.5, 0.6, 0.2],
                                    "A": [0.5, 0.6, 0.4, 0.2, 0.1], "B": [0.3, 0.4, 0.4, 0.2, 0.1]}, alphas)
    # Held-out ID picks 0.25/0.75 (a tie, broken towards the paper's 0.5 -> either is 0.25 away; first wins).
    choice = choose_alphas(result.curves())
    assert choice["best_id_val"] in (0.25, 0.75) and choice["best_avg_shifts"] == 0.25
    assert choice["paper_default"] == PAPER_ALPHA == 0.5
    no_val = fake_result(None, {"ID": [0.1, 0.2, 0.3, 0.4, 0.9], "A": [0.2, 0.2, 0.2, 0.2, 0.2]}, alphas)
    choice = choose_alphas(no_val.curves())
    # Without an ID-val set the ID test set chooses: its key says so, never "best_id_val".
    assert choice == {"best_id_test": 1.0, "best_avg_shifts": 0.5, "paper_default": 0.5}
    assert choice["best_avg_shifts"] == 0.5  # all equal: the paper's default wins the tie
    assert no_val.curves().avg_shifts(0.25) == pytest.approx(0.2)


def test_each_alpha_choice_says_what_it_was_chosen_on():
    alphas = [0.0, 0.5, 1.0]
    tops = {"ID": [0.1, 0.2, 0.9], "A": [0.3, 0.4, 0.1]}
    held_out = alpha_choices(fake_result("ID-val", {**tops, "ID-val": [0.1, 0.6, 0.5]}, alphas).curves())
    assert [c.caption() for c in held_out] == [
        "best ID-val α: 0.5 (chosen on ID-val)", "best avg-shift α: 0.5 (chosen on the shift sets: an oracle)",
        "paper default α: 0.5 (fixed)"]
    on_test = alpha_choices(fake_result(None, tops, alphas).curves())[0]
    assert on_test.key == "best_id_test" and on_test.alpha == 1.0
    assert on_test.caption() == ("best ID-test α (optimistic): 1 (chosen on the test set ID; add [id_val] to choose "
                                 "on held-out data)")
    assert "ID-val" not in on_test.caption()


def test_alpha_grid():
    assert len(ALPHA_GRID) == 21 and ALPHA_GRID[0] == 0.0 and ALPHA_GRID[-1] == 1.0 and 0.05 in ALPHA_GRID


def test_a_sweep_result_is_its_curves_kept_in_step_with_its_predictions():
    result = fake_result(None, {"ID": [], "A": [], "B": []}, [])
    result.alphas = [0.0, 0.5, 1.0]
    assert isinstance(result, Curves) and result.top1s == {"ID": {}, "A": {}, "B": {}} and result.counts == {}
    one = fake_result(None, {"ID": [0.1, 0.2, 0.3], "A": [0.5, 0.6, 0.4], "B": [0.3, 0.2, 0.1]}, result.alphas)
    result.record({"B": one.predictions["B"], "A": one.predictions["A"]}, {"A": one.predictions["B"]})
    assert list(result.top1s) == ["ID", "A", "B"] and list(result.counts) == ["A", "B"]  # the sets' order stays
    assert result.top1("A", 0.5) == 0.6 and result.ensemble == {}  # an ensemble of only some sets is not shown
    result.record({"ID": one.predictions["ID"]}, {"ID": one.predictions["A"], "B": one.predictions["ID"]})
    assert result.accuracies(0.5) == pytest.approx({"ID": 0.2, "A": 0.6, "B": 0.2, "avg_shifts": 0.4})
    assert result.counts == {"ID": (1, 1), "A": (1, 1), "B": (1, 1)} and result.images == (3, 3)
    assert list(result.ensemble) == ["ID", "A", "B"] and result.ensemble_curves().top1("A", 1.0) == 0.1
    assert set(result.errors) == set(result.intervals) == {"ID", "A", "B", "avg_shifts"}
    curves = result.curves()
    assert type(curves) is Curves and curves.to_json() == result.to_json()
    curves.top1s["ID"][0.5] = 1.0
    assert result.top1("ID", 0.5) == 0.2  # a copy


def test_a_cache_entry_reads_back_as_the_predictions_it_was_made_of():
    labels = torch.tensor([0, 1, 1])
    alphas = [1.0, 0.0]
    by_alpha = {a: scored(torch.tensor(row, dtype=torch.int16), labels, torch.tensor([0, 2, 5]), 7,
                          torch.rand(3, 2).half())
                for a, row in zip(alphas, ([0, 1, 0], [1, 1, 1]), strict=True)}
    tensors = entry_tensors(by_alpha, labels)
    back, ensemble = entry_predictions(tensors, [by_alpha[a].top1 for a in sorted(alphas)], 7, alphas)
    assert ensemble == {} and sorted(back) == sorted(alphas)
    for alpha, p in by_alpha.items():
        q = back[alpha]
        assert (q.top1, q.total, q.n) == (p.top1, 7, 3)
        assert all(torch.equal(getattr(q, k), getattr(p, k)) for k in ("pred", "correct", "index", "probs"))
    _, ensemble = entry_predictions(entry_tensors(by_alpha, labels, by_alpha), [0.0, 0.0], 7, alphas)
    assert ensemble[1.0].top1 == pytest.approx(2 / 3) and torch.equal(ensemble[0.0].correct, by_alpha[0.0].correct)
