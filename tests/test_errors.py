"""Errors keep their cause, are caught only where meant, and cheap problems are found before expensive loads."""

from __future__ import annotations

import argparse

import huggingface_hub
import pytest
import torch
from safetensors import SafetensorError

from wiseft_explorer.cli import commands as cli
from wiseft_explorer.core import (
    CheckpointError,
    DistributedError,
    Group,
    ModelLoadError,
    load_checkpoint,
    load_clip,
)
from wiseft_explorer.core.distributed import _collective
from wiseft_explorer.data import ImageDecodeError, decode_image
from wiseft_explorer.evaluation import ResultsError
from wiseft_explorer.evaluation.result_files import _read
from wiseft_explorer.experiment import ModelSpec

# A PNG signature and IHDR chunk whose length field promises more than the file holds: Pillow fails inside its
# header parser with an exception type of its own choosing.
_BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + b"\x00" * 5


@pytest.fixture()
def corrupt_safetensors(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    return path


def test_an_unreadable_safetensors_checkpoint_keeps_the_reader_error(corrupt_safetensors):
    with pytest.raises(CheckpointError, match="not a readable safetensors file") as info:
        load_checkpoint(corrupt_safetensors)
    assert isinstance(info.value.__cause__, SafetensorError)


def test_a_refused_pickle_keeps_the_full_weights_only_message(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(2), "extra": argparse.Namespace(x=1)}, path)  # not a plain tensor file
    with pytest.raises(CheckpointError, match="refused") as info:
        load_checkpoint(path)
    # The message shows one line of torch's explanation; the cause keeps all of it (which global was refused).
    assert info.value.__cause__ is not None
    assert str(info.value.__cause__).count("\n") > 0


def test_a_corrupt_image_keeps_the_decoder_error_but_a_non_image_needs_none():
    with pytest.raises(ImageDecodeError, match="corrupt") as info:
        decode_image(_BROKEN_PNG, "broken.png")
    assert info.value.__cause__ is not None
    with pytest.raises(ImageDecodeError, match="not an image") as info:
        decode_image(b"just some text, nothing like an image", "notes.png")
    # Pillow's "cannot identify image file" says less than our sniffed kind: deliberately not chained.
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_an_unreadable_image_path_keeps_the_os_error(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read the file") as info:
        decode_image(tmp_path / "missing.png")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_a_damaged_per_image_file_keeps_the_reader_error(corrupt_safetensors):
    with pytest.raises(ResultsError, match="not a readable per-image file") as info:
        _read(corrupt_safetensors)
    assert isinstance(info.value.__cause__, SafetensorError)


def test_a_failed_collective_keeps_the_lines_the_message_drops():
    lines = "store timed out\nwaited for rank 3 at 10.0.0.2:29500\nlast seen 12 s ago"
    with pytest.raises(DistributedError, match="store timed out") as info, _collective(Group(), "all-gather"):
        raise RuntimeError(lines)
    assert "\n" not in str(info.value).split("; ")[0]
    assert str(info.value.__cause__) == lines


def test_an_offline_hub_fetch_keeps_the_hub_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match="Offline?") as info:
        load_clip(ModelSpec("ViT-B-32", "hf-hub:laion/no-such-repo"))
    assert isinstance(info.value.__cause__, OSError)


def test_an_error_in_the_hub_code_itself_is_not_called_offline(monkeypatch):
    import open_clip.pretrained

    def broken(*args, **kwargs):
        raise TypeError("download_pretrained_from_hf() got an unexpected keyword argument")

    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_hf", broken)
    with pytest.raises(TypeError, match="unexpected keyword"):
        load_clip(ModelSpec("ViT-B-32", "hf-hub:laion/some-repo"))


def test_the_cli_still_prints_one_line_for_a_chained_error(corrupt_safetensors, tmp_path, capsys):
    code = cli.main(["convert", str(corrupt_safetensors), str(tmp_path / "out.safetensors")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: broken.safetensors: not a readable safetensors file")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_app_still_shows_one_line_for_a_chained_error(corrupt_safetensors, monkeypatch):
    from wiseft_explorer.ui import errors

    shown: list[str] = []
    monkeypatch.setattr(errors.st, "error", shown.append)
    with errors.shown_errors("Loading"):
        load_checkpoint(corrupt_safetensors)
    assert len(shown) == 1 and shown[0].startswith("Loading: broken.safetensors: not a readable safetensors")
    assert "\n" not in shown[0]


# --- Only a failed fetch is called "could not get pretrained weights" ---------------------------------------------


@pytest.fixture()
def create_raises(monkeypatch):
    """Make open_clip's model creation raise what the test gives, with the tag checks (network probes) passed."""
    import open_clip

    from wiseft_explorer.core import loading

    monkeypatch.setattr(loading, "check_tag_available", lambda name, tag: None)

    def use(make_error):
        def create(*args, **kwargs):
            raise make_error()

        monkeypatch.setattr(open_clip, "create_model_and_transforms", create)

    return use


def _failed_download() -> RuntimeError:
    """What open_clip raises when a tag's download fails: a bare RuntimeError whose context is the network error."""
    try:
        raise huggingface_hub.errors.LocalEntryNotFoundError("offline and not in the cache")
    except OSError as err:
        return RuntimeError(f"Failed to download weights for tag 'openai': {err}")


def test_a_runtime_error_unrelated_to_downloads_keeps_its_own_message(create_raises):
    create_raises(lambda: RuntimeError("CUDA error: out of memory"))
    with pytest.raises(RuntimeError) as info:
        load_clip(ModelSpec("ViT-B-32", "openai"))
    assert not isinstance(info.value, ModelLoadError)
    assert str(info.value) == "CUDA error: out of memory"


def test_a_failed_download_is_relabelled_and_keeps_its_cause(create_raises):
    create_raises(_failed_download)
    with pytest.raises(ModelLoadError, match="could not get pretrained weights 'openai' for 'ViT-B-32'") as info:
        load_clip(ModelSpec("ViT-B-32", "openai"))
    assert str(info.value.__cause__).startswith("Failed to download weights")


def test_a_hub_file_that_cannot_be_fetched_is_relabelled(create_raises):
    # open_clip's Hub helper wraps every failure in FileNotFoundError.
    create_raises(lambda: FileNotFoundError("Failed to download file (open_clip_model.safetensors) for x/y"))
    with pytest.raises(ModelLoadError, match="could not get pretrained weights") as info:
        load_clip(ModelSpec("ViT-B-32", "openai"))
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_which_errors_mean_the_weights_did_not_arrive():
    from wiseft_explorer.core import is_download_failure

    assert is_download_failure(_failed_download())
    assert is_download_failure(RuntimeError("Model has been downloaded but the SHA256 checksum does not not match"))
    assert is_download_failure(ConnectionError("Name or service not known"))
    assert not is_download_failure(RuntimeError("Error(s) in loading state_dict: size mismatch for visual.proj"))
    assert not is_download_failure(RuntimeError("CUDA error: out of memory"))


# --- Cheap problems first: nothing about the fine-tuned file waits for the CLIP load ------------------------------


@pytest.fixture()
def no_clip(monkeypatch):
    """Fail the test if anything builds a CLIP."""
    import open_clip

    def create(*args, **kwargs):
        raise AssertionError("a CLIP was built before a cheap check failed")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", create)


def _tiny_experiment(tiny, **changes):
    import dataclasses

    from wiseft_explorer.experiment import load_experiment

    return dataclasses.replace(load_experiment(tiny.toml), **changes)


def test_a_missing_finetuned_checkpoint_is_found_before_the_clip_load(tiny, tmp_path, no_clip):
    from wiseft_explorer.core import load_models

    gone = tmp_path / "deleted-after-the-experiment-was-read.safetensors"
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_models(_tiny_experiment(tiny, finetuned=gone))


def test_an_empty_finetuned_checkpoint_is_found_before_the_clip_load(tiny, tmp_path, no_clip):
    from wiseft_explorer.core import load_models

    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_models(_tiny_experiment(tiny, finetuned=empty))


def test_no_finetuned_checkpoint_is_found_before_the_clip_load(tiny, no_clip):
    from wiseft_explorer.core import load_models

    with pytest.raises(ModelLoadError, match=r"no \[finetuned\] checkpoint yet"):
        load_models(_tiny_experiment(tiny, finetuned=None))


def test_a_missing_model_config_is_named_before_the_clip_load(tiny, tmp_path, no_clip):
    from wiseft_explorer.core import load_models

    exp = _tiny_experiment(tiny)
    spec = ModelSpec(exp.zeroshot.name, exp.zeroshot.pretrained, tmp_path / f"{exp.zeroshot.name}.json")
    with pytest.raises(ModelLoadError, match="model config not found"):
        load_models(_tiny_experiment(tiny, zeroshot=spec))


def test_a_missing_training_folder_is_found_before_the_clip_load(tiny, tmp_path, no_clip, capsys):
    code = cli.main(["finetune", "--experiment", str(tiny.toml), "--train", str(tmp_path / "no-such-folder"),
                     "--out", str(tmp_path / "ft.safetensors")])
    assert code != 0 and "no-such-folder" in capsys.readouterr().err


def test_a_training_class_the_experiment_lacks_is_found_before_the_clip_load(tiny, tmp_path, no_clip, capsys):
    (tmp_path / "train" / "not-a-class-of-the-experiment").mkdir(parents=True)
    code = cli.main(["finetune", "--experiment", str(tiny.toml), "--train", str(tmp_path / "train"),
                     "--out", str(tmp_path / "ft.safetensors")])
    assert code != 0 and "not-a-class-of-the-experiment" in capsys.readouterr().err


def test_the_tiny_experiment_still_loads(tiny):
    from wiseft_explorer.core import load_models

    pair = load_models(_tiny_experiment(tiny))
    assert pair.finetuned.num_classes == len(pair.zeroshot.head.weight)


# --- No import circle between the sweep and its error estimates, type-only imports included -----------------------


def _package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (TYPE_CHECKING blocks and functions too)."""
    import ast
    from pathlib import Path

    import wiseft_explorer

    root = Path(wiseft_explorer.__file__).parent
    graph: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        module = ".".join(("wiseft_explorer", *parts)).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = graph.setdefault(module, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                where = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
                targets.update({where, *(f"{where}.{a.name}" for a in node.names)})
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
    return {m: {t for t in ts if t in graph} for m, ts in graph.items()}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module == goal:
            return True
        if module not in seen:
            seen.add(module)
            todo.extend(graph.get(module, ()))
    return False


def test_the_error_estimates_do_not_import_the_sweep_even_for_types():
    graph = _package_imports()
    result = "wiseft_explorer.evaluation.sweep_result"  # SweepResult: its sampling errors come from uncertainty
    assert "wiseft_explorer.results.uncertainty" in graph[result]  # the walk sees the real import
    assert not _reaches(graph, "wiseft_explorer.results.uncertainty", result)


def test_the_error_estimates_take_plain_data():
    from types import SimpleNamespace

    from wiseft_explorer.results import compare_to_ends

    def scored(correct: list[bool]) -> SimpleNamespace:
        right = torch.tensor(correct)
        return SimpleNamespace(top1=float(right.float().mean()), correct=right, n=len(correct))

    by_alpha = {0.0: scored([True, False, False, True]), 0.5: scored([True, True, False, True]),
                1.0: scored([False, True, False, True])}
    result = SimpleNamespace(predictions={"shift": by_alpha}, shift_sets=["shift"], alphas=[0.0, 0.5, 1.0])
    table = compare_to_ends(result, 0.5)
    assert table.loc["shift", "vs_zeroshot"] == pytest.approx(0.25)
    assert table.loc["shift", "vs_finetuned"] == pytest.approx(0.25)
