"""Helpers for the library tests: a shared read-only runtime, experiment files, parallel CLI runs, evil pickles."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from tiny import CLASSES, TEMPLATES, TINY_NAME, TinyExperiment

from wiseft_explorer.evaluation import ExperimentRuntime

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def set_images(runtime: ExperimentRuntime, name: str) -> torch.Tensor:
    """A small set's images preprocessed in memory (the reference path the streaming engine must match)."""
    from wiseft_explorer.data import preprocess_set

    return preprocess_set(runtime.eval_set(name), runtime.preprocess)


def in_memory_predictions(runtime: ExperimentRuntime, alphas) -> dict:
    """(set, alpha) -> Predictions of the whole set scored in memory: the reference a streamed sweep must match."""
    from wiseft_explorer.evaluation import predict_logits, summarise

    working, out = runtime.new_working(), {}
    for name in runtime.set_names:
        ev, images = runtime.eval_set(name), set_images(runtime, name)
        for alpha in alphas:
            logits = predict_logits(runtime.classifier_at(working, alpha), images, runtime.device)
            out[name, alpha] = summarise(logits, ev.labels, ev.class_indices, groups=ev.groups)
    return out


@lru_cache(maxsize=4)
def _runtime(toml: str) -> ExperimentRuntime:
    return ExperimentRuntime.from_path(toml)


def shared_runtime(tiny: TinyExperiment) -> ExperimentRuntime:
    """One runtime of the tiny experiment per test session; callers must treat it as read-only."""
    return _runtime(str(tiny.toml))


def write_experiment(folder: Path, tiny: TinyExperiment, *, name: str = "exp.toml", model: str = TINY_NAME,
                     pretrained: str | None = None, config: bool = True, finetuned: str | Path | None = None,
                     shifts: list[dict] | None = None, head_policy: str = "interpolate",
                     cache_dir: str | Path | None = None) -> Path:
    """An experiment TOML (absolute paths) on the tiny models; defaults reproduce tiny.toml's models and ID set."""
    q = json.dumps
    shifts = [{"name": "Dark", "source": str(tiny.shift_dir), "classes": CLASSES[:2]}] if shifts is None else shifts
    lines = ['name = "generated"', 'device = "cpu"', "batch_size = 8", f"head_policy = {q(head_policy)}",
             f"cache_dir = {q(str(cache_dir or folder / 'cache'))}", "", "[zeroshot]", f"model = {q(model)}",
             f"pretrained = {q(pretrained if pretrained is not None else str(tiny.zeroshot))}"]
    if config:
        lines.append(f"config = {q(str(tiny.config))}")
    lines += ["", "[finetuned]", f"checkpoint = {q(str(finetuned or tiny.finetuned))}", "", "[classes]",
              f"names = {q(CLASSES)}", f"templates = {q(TEMPLATES)}", "", "[id]", 'name = "ID"',
              f"source = {q(str(tiny.id_dir))}"]
    for shift in shifts:
        lines += ["", "[[shifts]]"] + [f"{k} = {q(v)}" for k, v in shift.items()]
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class CliResult:
    """Exit code and output of one CLI subprocess."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def error_lines(self) -> list[str]:
        """Lines of stderr that report an error (argparse's usage line excluded)."""
        return [line for line in self.stderr.splitlines() if "error:" in line]


def cli_env(extra_path: Path | None = None) -> dict[str, str]:
    """Environment for CLI subprocesses: offline, two threads, tests folder importable (paper_model)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(TESTS), str(REPO), os.environ.get("PYTHONPATH")) if p))
    if extra_path is not None:
        env["WISEFT_CACHE_DIR"] = str(extra_path)
    return env


def run_python(code: str, **extra_env: str) -> list[str]:
    """The lines `python -c code` printed in a fresh interpreter (what a test's process already imported does not
    count there), from the repository root with cli_env(); fails the test with its error if it exits non-zero."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**cli_env(), **extra_env}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()


def run_cli_parallel(commands: dict[str, list[str]], cwd: Path, env: dict[str, str],
                     timeout: float = 300) -> dict[str, CliResult]:
    """Run several `python -m wiseft_explorer ...` at once: each pays ~10 s of imports, so overlap them."""
    procs = {key: subprocess.Popen([sys.executable, "-m", "wiseft_explorer", *args], cwd=cwd, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key, args in commands.items()}
    results = {}
    for key, proc in procs.items():
        out, err = proc.communicate(timeout=timeout)
        results[key] = CliResult(commands[key], proc.returncode, out, err)
    return results


class _Payload:
    """Unpickling this calls open(marker, 'w'): the file appearing proves code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_evil_pickles(folder: Path, marker: Path) -> dict[str, Path]:
    """Malicious checkpoints: a torch.save zip (looks like a state dict) and a raw pickle, both .pt/.bin."""
    folder.mkdir(parents=True, exist_ok=True)
    zipped = folder / "evil.pt"
    torch.save({"visual.conv1.weight": torch.zeros(1), "payload": _Payload(marker)}, zipped)
    raw = folder / "evil-raw.bin"
    raw.write_bytes(pickle.dumps({"state_dict": _Payload(marker)}, protocol=2))
    assert not marker.exists()
    return {"zip": zipped, "raw": raw}


def linear_checkpoint(tiny, path, seed: int):
    """A linear-classifier checkpoint over the tiny zero-shot tower: only a head (perturbed by `seed`) is stored."""
    from wiseft_explorer.core import build_zeroshot, classifier_metadata, load_clip, save_checkpoint
    from wiseft_explorer.experiment import ModelSpec

    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    head = build_zeroshot(clip, CLASSES, TEMPLATES).head
    gen = torch.Generator().manual_seed(seed)
    state = {f"head.{k}": v + 0.5 * v.std() * torch.randn(v.shape, generator=gen)
             for k, v in head.state_dict().items()}
    return save_checkpoint(path, state, classifier_metadata(clip, CLASSES, image_tower="zeroshot", seed=seed))


def copy_example(project: Path, example: str, checkpoints: tuple[str, ...]) -> Path:
    """A shipped `<example>.toml.example` copied into project/experiments/ as the README says, with empty stand-ins
    for the checkpoints it names under project/checkpoints/; the TOML's path."""
    from wiseft_explorer.experiment import BUILTIN_EXPERIMENTS

    toml = project / "experiments" / f"{example}.toml"
    toml.parent.mkdir(parents=True)
    shutil.copy(BUILTIN_EXPERIMENTS / f"{example}.toml.example", toml)
    (project / "checkpoints").mkdir()
    for name in checkpoints:
        (project / "checkpoints" / name).write_bytes(b"")
    return toml


def finetune_on_two_ranks_and_one(args: list[str], folder: Path, two_only: tuple[str, ...] = ()):
    """`finetune` with `args` under torchrun on 2 gloo processes (with `two_only` added there), then in this process
    with one thread (as each torchrun process has); returns the torchrun run and both checkpoints with metadata."""
    from wiseft_explorer.cli import main as cli_main
    from wiseft_explorer.core import load_checkpoint

    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "wiseft_explorer", *args, *two_only, "--out", str(folder / "two.safetensors")],
                         cwd=folder, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli_main([*args, "--out", str(folder / "one.safetensors")]) == 0
    finally:
        torch.set_num_threads(saved)
    return two, load_checkpoint(folder / "two.safetensors"), load_checkpoint(folder / "one.safetensors")
