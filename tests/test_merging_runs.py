"""Merge methods through the sweep, the cache keys, the export, the CLI and the Fisher cache, on the tiny model."""

from __future__ import annotations

import shutil

import pytest
import torch

from wiseft_explorer.cli import main
from wiseft_explorer.core import load_checkpoint
from wiseft_explorer.evaluation import ExperimentRuntime, entry_key, run_sweep
from wiseft_explorer.evaluation.label_free import dawin, dawin_from_sweep, model_stock_alpha
from wiseft_explorer.evaluation.merging import endpoints, with_method


def test_method_runtime_sweeps_its_own_path_with_its_own_keys(tiny):
    plain = ExperimentRuntime.from_path(tiny.toml)
    slerp = with_method(plain, "slerp")
    assert with_method(plain, "wiseft") is plain
    # the plain key has no method part: the keys computed before merge methods existed stay valid
    assert "method" not in plain.fingerprint
    assert entry_key(plain, "ID", [0.5], None) != entry_key(slerp, "ID", [0.5], None)
    assert entry_key(with_method(plain, "lines", {"beta": 0.5}), "ID", [0.5], None) != entry_key(
        with_method(plain, "lines", {"beta": 0.2}), "ID", [0.5], None)
    result = run_sweep(slerp, [0.0, 0.5, 1.0], resume=False)
    base = run_sweep(plain, [0.0, 1.0], resume=False)
    for name in plain.set_names:  # both paths start at θ₀; SLERP ends at θ₁
        assert result.predictions[name][0.0].top1 == base.predictions[name][0.0].top1
        assert torch.equal(result.predictions[name][1.0].pred, base.predictions[name][1.0].pred)
    with slerp.borrow_working(0.5) as working:
        theta = torch.cat([f for f in working.flats.values()])
        line = torch.cat(list(plain.space.theta0.values())).lerp(torch.cat(list(plain.space.theta1.values())), 0.5)
        assert not torch.allclose(theta, line) and torch.isfinite(theta).all()


def test_soups_and_model_stock_use_every_endpoint(two):
    runtime = ExperimentRuntime.from_path(two)
    found = endpoints(runtime)
    assert len(found.inputs.endpoints) == 2 and found.inputs.names == ["a", "b"] and not found.skipped
    soup = with_method(runtime, "soup")
    with soup.borrow_working(1.0) as working:
        for dtype, flat in working.flats.items():
            mean = (found.inputs.endpoints[0][dtype] + found.inputs.endpoints[1][dtype]) / 2
            assert torch.allclose(flat, mean, atol=1e-6)
    alpha = model_stock_alpha(runtime)
    assert alpha is not None and -1 < alpha < 1
    run_sweep(with_method(runtime, "model-stock"), [1.0], resume=False)


def test_dawin_weights_and_mix_by_hand():
    p0 = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    p1 = torch.tensor([[0.99, 0.01], [0.5, 0.5]])
    h0 = -(p0 * p0.log()).sum(1)
    h1 = -(p1 * p1.log()).sum(1)
    lam = torch.exp(-h1) / (torch.exp(-h0) + torch.exp(-h1))
    found = dawin(p0, p1, torch.tensor([0, 1]))
    mix = (1 - lam)[:, None] * p0 + lam[:, None] * p1
    assert found.mean_lambda == pytest.approx(float(lam.mean()))
    assert found.mix_top1 == pytest.approx(float((mix.argmax(1) == torch.tensor([0, 1])).float().mean()))


def test_dawin_from_a_sweep(tiny):
    runtime = ExperimentRuntime.from_path(tiny.toml)
    found = dawin_from_sweep(runtime, run_sweep(runtime, [0.0, 1.0], resume=False))
    assert 0 < found.mean_lambda < 1 and 0 <= found.mix_top1 <= 1
    assert found.images == len(runtime.eval_set("ID"))


def test_cli_fisher_then_sweep_and_export_with_a_method(tiny, tmp_path, capsys):
    # A copy: the Fishers land beside its checkpoints, and the shared tiny experiment must stay without them.
    root = tmp_path / "exp"
    shutil.copytree(tiny.root, root, ignore=shutil.ignore_patterns("cache"))
    toml = str(root / tiny.toml.name)
    assert main(["sweep", "--experiment", toml, "--method", "fisher", "--alpha", "0.5", "--quiet"]) == 2
    assert "wiseft-explorer fisher" in capsys.readouterr().err
    assert main(["fisher", "--experiment", toml, "--quiet"]) == 0
    files = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("Fisher")]
    assert len(files) == 2 and all(f.startswith(str(root)) for f in files)
    assert main(["sweep", "--experiment", toml, "--method", "fisher", "--alpha", "0.5", "--quiet"]) == 0
    assert main(["sweep", "--experiment", toml, "--method", "lines", "--param", "beta=0.5", "--alpha", "0.5",
                 "--quiet"]) == 0
    assert main(["sweep", "--experiment", toml, "--method", "lines", "--param", "beta", "--quiet"]) == 2
    out = tmp_path / "m.safetensors"
    assert main(["export", "--experiment", toml, "--method", "slerp", "--alpha", "0.5", "--out", str(out)]) == 0
    assert load_checkpoint(out)[1]["recipe"]["wiseft"]["method"] == {"name": "slerp", "params": {}}
