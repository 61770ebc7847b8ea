"""A checkpoint rewritten at the same path (`finetune --out` again) is what the app shows at its next rerun: the
runtime, the sweep's key and the warm curves follow the checkpoint, not only the experiment file's time (#24, 5)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from libkit import write_experiment
from streamlit.testing.v1 import AppTest
from test_app import _metric_values, make_app_experiment
from tiny import CLASSES, TEMPLATES, TINY_NAME, fake_finetune

from wiseft_explorer.core import build_zeroshot, classifier_metadata, load_clip, save_checkpoint
from wiseft_explorer.evaluation import ExperimentRuntime, RuntimeRegistry, run_sweep, sweep_key
from wiseft_explorer.experiment import ModelSpec, load_experiment
from wiseft_explorer.results import curves_path, stored_curves
from wiseft_explorer.store import files_version

ROOT = Path(__file__).resolve().parent.parent
METRIC = "ID at α = 1"  # the fine-tuned model alone: the two checkpoints differ most there


def _rewrite_finetuned(toml: Path) -> None:
    """Write another fine-tuned classifier (an unfitted head: other accuracies) over the experiment's checkpoint,
    atomically as `finetune --out` does, leaving the experiment file untouched."""
    exp = load_experiment(toml)
    assert exp.finetuned is not None and exp.zeroshot.pretrained is not None
    before = toml.stat().st_mtime_ns
    clip = load_clip(ModelSpec(TINY_NAME, exp.zeroshot.pretrained, exp.zeroshot.config))
    other = fake_finetune(build_zeroshot(clip, CLASSES, TEMPLATES), seed=7)
    save_checkpoint(exp.finetuned, other.state_dict(), classifier_metadata(clip, CLASSES, recipe={"kind": "other"}))
    assert toml.stat().st_mtime_ns == before


@pytest.fixture
def toml(tmp_path) -> Path:
    """The app's tiny experiment, decoding in the process (worker processes cost seconds to start)."""
    path = make_app_experiment(tmp_path / "exp")
    path.write_text(path.read_text().replace('device = "cpu"', 'device = "cpu"\nworkers = 0', 1))
    return path


def test_a_rewritten_checkpoint_gets_a_new_runtime_sweep_key_and_curves(toml):
    registry = RuntimeRegistry(budget=2 ** 40)
    exp = load_experiment(toml)
    first = registry.get(str(toml), files_version(exp))
    key, where = sweep_key(first), curves_path(exp)
    run_sweep(first)
    assert stored_curves(exp) is not None
    assert registry.get(str(toml), files_version(load_experiment(toml))) is first  # nothing changed: shared

    _rewrite_finetuned(toml)
    exp = load_experiment(toml)
    second = registry.get(str(toml), files_version(exp))
    assert second is not first
    assert sweep_key(second) != key
    assert curves_path(exp) != where and stored_curves(exp) is None  # the old curves are not the new model's


def test_files_version_follows_every_model_file(tiny, tmp_path):
    files = {name: Path(shutil.copy2(getattr(tiny, name), tmp_path)) for name in ("zeroshot", "finetuned", "config")}
    exp = load_experiment(write_experiment(tmp_path, tiny, pretrained=str(files["zeroshot"]),
                                           finetuned=files["finetuned"]))
    version = files_version(exp)
    assert files_version(load_experiment(exp.path)) == version  # nothing changed: the same version
    for path in (files["zeroshot"], files["finetuned"], exp.path):
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: it may have changed
        assert files_version(exp) != version
        version = files_version(exp)


def test_the_app_shows_the_rewritten_checkpoints_curves_at_its_next_rerun(toml, monkeypatch):
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(toml))
    run_sweep(ExperimentRuntime.from_path(toml))  # stored curves: the app starts warm
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.query_params["alpha"] = "1"
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    old = _metric_values(at)[METRIC]

    _rewrite_finetuned(toml)
    new_curves = run_sweep(ExperimentRuntime.from_path(toml)).curves()  # e.g. `sweep` run again from the CLI
    new = f"{100 * new_curves.top1('ID', 1.0):.1f}%"
    assert new != old  # the two checkpoints are told apart by what the page shows
    at.run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert _metric_values(at)[METRIC] == new
