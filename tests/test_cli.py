"""The CLI through `python -m wiseft_explorer`: sweep, predict, export, info, help and one-line error exits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from libkit import CliResult, cli_env, run_cli_parallel, set_images, shared_runtime, write_experiment

from wiseft_explorer.cli import build_parser, main
from wiseft_explorer.core import load_checkpoint
from wiseft_explorer.data import decode_image
from wiseft_explorer.evaluation import predict_logits, predict_three, preprocess, summarise


@dataclass
class Runs:
    """The files the CLI was pointed at and what each run returned."""

    folder: Path
    experiment: Path
    good: Path
    runs: dict[str, CliResult]


@pytest.fixture(scope="module")
def cli(tiny, tmp_path_factory) -> Runs:
    """Run every CLI case at once (each process spends ~10 s importing torch and open_clip)."""
    folder = tmp_path_factory.mktemp("cli")
    exp = str(write_experiment(folder, tiny))
    good = next((tiny.id_dir / "green circle").iterdir())
    bad = folder / "broken.png"
    bad.write_bytes(b"this is not a png")
    (folder / "bad.toml").write_text('name = "x"\nbatch_size = = 3\n')
    runs = run_cli_parallel({
        "sweep": ["sweep", "--experiment", exp, "--alpha", "0.5", "--out", str(folder / "r.jsonl"), "--quiet"],
        "sweep_grid": ["sweep", "--experiment", exp, "--quiet", "--compare-at", "0.25"],
        "predict": ["predict", "--experiment", exp, "--alpha", "0.3", str(good), str(bad)],
        "export": ["export", "--experiment", exp, "--alpha", "0.5", "--out", str(folder / "wise.safetensors")],
        "info": ["info", "--experiment", exp],
        "missing": ["sweep", "--experiment", str(folder / "no-such.toml")],
        "bad_toml": ["info", "--experiment", str(folder / "bad.toml")],
    }, cwd=folder, env=cli_env(folder / "cache"))
    return Runs(folder, Path(exp), good, runs)


def test_sweep_prints_the_table_and_writes_jsonl(cli, tiny):
    run = cli.runs["sweep"]
    assert run.returncode == 0, run.stderr
    header = run.stdout.splitlines()[0].split()
    assert header == ["ID", "Dark", "avg_shifts"]
    row = json.loads((cli.folder / "r.jsonl").read_text())
    assert row["alpha"] == 0.5 and row["id_set"] == "ID" and row["shift_sets"] == ["Dark"]
    runtime = shared_runtime(tiny)
    ev = runtime.eval_set("ID")
    model = runtime.classifier_at(runtime.new_working(), 0.5)
    expected = summarise(predict_logits(model, set_images(runtime, "ID"), runtime.device), ev.labels, None).top1
    assert row["ID:top1"] == pytest.approx(expected)
    assert f"{100 * expected:.1f}" in run.stdout


def test_predict_reports_good_images_and_fails_for_bad_ones(cli, tiny):
    run = cli.runs["predict"]
    assert run.returncode == 1  # non-zero because one file failed ...
    good, bad = json.loads(run.stdout)  # ... but the good one still has its results
    assert bad["image"].endswith("broken.png") and "error" in bad and "zeroshot" not in bad
    errors = run.error_lines()
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert good["alpha"] == 0.3 and set(good) == {"image", "alpha", "zeroshot", "interpolated", "finetuned"}
    runtime = shared_runtime(tiny)
    expected = predict_three(runtime, preprocess(runtime, [decode_image(cli.good)]), 0.3, runtime.new_working())
    for label in ("zeroshot", "alpha", "finetuned"):
        top = good["interpolated" if label == "alpha" else label]
        assert top["classes"] == expected[label][0].classes and len(top["classes"]) == 3  # top-5 of 3 classes
        assert top["probs"] == pytest.approx(expected[label][0].probs, abs=1e-5)
        assert top["probs"] == sorted(top["probs"], reverse=True) and sum(top["probs"]) == pytest.approx(1, abs=1e-4)


def test_export_writes_theta_alpha(cli, tiny):
    run = cli.runs["export"]
    assert run.returncode == 0, run.stderr
    assert "alpha=0.5, format=classifier" in run.stdout
    tensors, meta = load_checkpoint(cli.folder / "wise.safetensors")
    expected = shared_runtime(tiny).space.state_at(0.5)
    assert tensors.keys() == expected.keys()
    for key, value in expected.items():
        if key.startswith("head."):  # the zero-shot head is rebuilt per process: thread counts change the sums
            torch.testing.assert_close(tensors[key], value, atol=1e-6, rtol=1e-6)
        else:
            assert torch.equal(tensors[key], value), key


def test_info_describes_the_experiment(cli, tiny):
    run = cli.runs["info"]
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    runtime = shared_runtime(tiny)
    assert info["device"] == "cpu" and "alpha" not in info and info["classes"] == 3 and info["templates"] == 2
    assert info["zeroshot"]["model"] == "wiseft-tiny-rn" and info["shift_sets"] == ["Dark"]
    assert info["interpolated_weights"] == runtime.space.num_weights
    zs = info["zeroshot"]
    assert zs["clip_parameters"] > zs["classifier_parameters"] > zs["image_tower_parameters"] > 0
    assert info["finetuned"]["classifier_parameters"] == zs["classifier_parameters"]
    assert info["finetuned"]["recipe"] == {"kind": "test-perturbation"}


@pytest.mark.parametrize(("case", "expected"), [
    ("missing", "experiment file not found"),
    ("bad_toml", "bad.toml: not valid TOML"),
])
def test_bad_input_exits_non_zero_with_one_error_line(cli, case, expected):
    run = cli.runs[case]
    assert run.returncode == 2 and run.stdout == ""
    errors = run.error_lines()
    assert len(errors) == 1 and expected in errors[0], run.stderr
    assert "Traceback" not in run.stderr


def test_every_subcommand_has_help(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert {"sweep", "predict", "export", "info", "convert"} <= set(commands)
    for name in commands:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: wiseft-explorer {name}") and "--help" in out
        if name in ("sweep", "predict", "export"):
            assert "--experiment" in out and "--alpha" in out
        if name == "info":  # info reads the experiment at no alpha
            assert "--experiment" in out and "--alpha" not in out


def test_argument_errors_in_process(capsys, cli):
    with pytest.raises(SystemExit) as info:
        main(["sweep", "--alpha", "abc"])
    assert info.value.code == 2 and "expected a number such as 0.5, got 'abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["predict", "--alpha", "nan", str(cli.good)])
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert info.value.code == 2 and len(errors) == 1 and "--alpha: must be a finite number, got 'nan'" in errors[0]
    assert main(["export", "--experiment", str(cli.experiment), "--out", str(cli.folder / "x.safetensors")]) == 2
    assert capsys.readouterr().err.strip() == "error: export needs --alpha (e.g. --alpha 0.5)"


def test_a_full_sweep_compares_alpha_with_both_ends(cli):
    run = cli.runs["sweep_grid"]
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("alpha 0.25 minus each end"))
    rows = {line.split()[0]: line for line in lines[start + 1:]}
    assert set(rows) == {"ID", "Dark", "avg_shifts"}
    table = {line.split()[0]: line.split() for line in lines[2:23]}  # the 21 grid rows, after two header lines
    delta = float(table["0.25"][1]) - float(table["1.00"][1])  # ID column, rounded to 0.1
    shown = float(rows["ID"].split("vs fine-tuned")[1].split()[0])  # "+1.2 ± 0.4 [...]" or "+0.0  (few differ) [...]"
    assert abs(shown - delta) <= 0.11
    # The single-alpha sweep has no ends to compare with.
    assert "minus each end" not in cli.runs["sweep"].stdout


def test_each_command_lists_only_the_options_that_apply_to_it():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    helps = {name: parser.format_help() for name, parser in sub.items()}
    assert not {"--experiment", "--alpha", "--endpoint"} & set(helps["convert"].split())
    assert "--alpha" not in helps["info"] and "--endpoint" in helps["info"]
    for name in ("predict", "export", "info"):
        assert "sweep" not in helps[name].split("--endpoint", 1)[1], name
    assert "every one" in helps["sweep"].split("--endpoint", 1)[1]
