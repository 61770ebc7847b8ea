"""Untrusted checkpoints: a malicious pickle is refused by every entry point and never runs; trusted ones convert."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from libkit import CliResult, cli_env, run_cli_parallel, shared_runtime, write_evil_pickles, write_experiment
from paper_model import paper_checkpoint
from tiny import TINY_CONFIG, TINY_NAME

from wiseft_explorer.core import (
    CLASSIFIER_FORMAT,
    OPEN_CLIP_FORMAT,
    CheckpointError,
    convert_trusted_pickle,
    load_checkpoint,
    load_clip,
)
from wiseft_explorer.evaluation import ExperimentRuntime
from wiseft_explorer.experiment import ModelSpec


@dataclass
class Evil:
    """Malicious files, the marker their payload would create, and the CLI runs made against them."""

    folder: Path
    marker: Path
    files: dict[str, Path]
    local_dir: Path
    paper: Path
    cli: dict[str, CliResult]


@pytest.fixture(scope="module")
def evil(tiny, tmp_path_factory) -> Evil:
    """Write the malicious pickles and run the CLI against them (in parallel: each process pays its imports)."""
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "PWNED"
    files = write_evil_pickles(folder, marker)
    local_dir = folder / "local"
    local_dir.mkdir()
    (local_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": {}}))
    (local_dir / "open_clip_pytorch_model.bin").write_bytes(files["zip"].read_bytes())
    runtime = shared_runtime(tiny)
    paper = folder / "paper_classifier.pt"
    paper_checkpoint(runtime.models.clip.model, runtime.models.finetuned, paper)
    ft_toml = write_experiment(folder, tiny, name="evil-ft.toml", finetuned=files["zip"])
    zs_toml = write_experiment(folder, tiny, name="evil-zs.toml", pretrained=str(files["raw"]))
    cli = run_cli_parallel({
        "info": ["info", "--experiment", str(ft_toml)],
        "sweep": ["sweep", "--experiment", str(zs_toml), "--alpha", "0.5", "--quiet"],
        "convert": ["convert", str(files["zip"]), str(folder / "converted.safetensors")],
        "trusted": ["convert", "--trust-pickle", str(paper), str(folder / "paper.safetensors")],
    }, cwd=folder, env=cli_env(folder / "cache"))
    return Evil(folder, marker, files, local_dir, paper, cli)


def assert_refused(err: BaseException, evil: Evil) -> None:
    message = str(err)
    assert "refused" in message and "--trust-pickle" in message and "arbitrary code" in message
    assert not evil.marker.exists()


@pytest.mark.parametrize("kind", ["zip", "raw"])
def test_load_checkpoint_refuses_pickles(evil, kind):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil.files[kind])
    assert_refused(info.value, evil)


def test_zero_shot_pretrained_file_is_refused(evil, tiny):
    for kind in ("zip", "raw"):
        with pytest.raises(CheckpointError) as info:
            load_clip(ModelSpec(TINY_NAME, str(evil.files[kind]), tiny.config))
        assert_refused(info.value, evil)


def test_local_dir_weights_are_refused(evil):
    # Both spellings: as `pretrained` and as open_clip's own `local-dir:` model name (open_clip would unpickle).
    for spec in (ModelSpec(TINY_NAME, f"local-dir:{evil.local_dir}"), ModelSpec(f"local-dir:{evil.local_dir}")):
        with pytest.raises(CheckpointError) as info:
            load_clip(spec)
        assert_refused(info.value, evil)


def test_fine_tuned_checkpoint_is_refused(evil, tiny, tmp_path):
    runtime = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, finetuned=evil.files["raw"]))
    with pytest.raises(CheckpointError) as info:
        runtime.models  # noqa: B018 - loading is the point
    assert_refused(info.value, evil)


@pytest.mark.parametrize("command", ["info", "sweep", "convert"])
def test_cli_refuses_without_trust_pickle(evil, command):
    run = evil.cli[command]
    assert run.returncode == 2, run.stderr
    assert len(run.error_lines()) == 1 and "refused" in run.error_lines()[0]
    assert run.stdout == ""
    assert not evil.marker.exists()
    assert not (evil.folder / "converted.safetensors").exists()


def test_convert_trust_pickle_makes_a_loadable_checkpoint(evil, tiny, tmp_path):
    run = evil.cli["trusted"]
    assert run.returncode == 0, run.stderr
    out = evil.folder / "paper.safetensors"
    assert f"wrote {out}" in run.stdout
    tensors, meta = load_checkpoint(out)
    assert meta["format"] == CLASSIFIER_FORMAT and meta["converted_from"] == "paper_classifier.pt"
    runtime = shared_runtime(tiny)
    converted = ExperimentRuntime.from_path(write_experiment(tmp_path, tiny, finetuned=out))
    reference = runtime.models.finetuned.state_dict()
    for key, value in converted.models.finetuned.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert not evil.marker.exists()


def test_convert_in_process_handles_plain_state_dicts(tiny, tmp_path):
    state = shared_runtime(tiny).models.clip.model.state_dict()
    torch.save({"state_dict": state}, tmp_path / "plain.pt")
    out = convert_trusted_pickle(tmp_path / "plain.pt", tmp_path / "plain.safetensors")
    tensors, meta = load_checkpoint(out)
    assert meta["format"] == OPEN_CLIP_FORMAT and all(torch.equal(tensors[k], v) for k, v in state.items())
