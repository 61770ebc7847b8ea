"""The README's "Your own models and data" walk, run as written in a fresh folder (issue #29, items 1 and 2).

The try-it-first block runs for real (make-example's tiny model). The walk with a real ViT-B-32 gets stand-ins: the
name "ViT-B-32" is registered, for this test only, as the tiny architecture, and random tiny weights and a few
images sit where the README's experiment file says its checkpoint and folders are.
"""

from __future__ import annotations

import json

import open_clip
import pytest
import torch
from open_clip import factory
from readme_walk import CLI, Walk, blocks, inside, run_cli, section, shell_lines

from wiseft_explorer.core import save_checkpoint
from wiseft_explorer.demo import TINY_CONFIG, write_folder
from wiseft_explorer.experiment import listed_experiments, load_experiment

OWN = section("Your own models and data")
OTHER_SOURCES = "### Checkpoints from Hugging Face `transformers` and timm"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine its waiting makes each step 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _app_opens(env: dict[str, str], cwd) -> None:
    """What `WISEFT_EXPERIMENT=... python -m wiseft_explorer app` opens from `cwd`: a listed file whose paths all hold."""
    from wiseft_explorer.ui.state import default_experiment

    with inside(cwd, env):
        path = default_experiment()
        assert path in listed_experiments(), f"{path} is not in the app's experiment list (./experiments)"
        exp = load_experiment(path)  # every file it names exists, the fine-tuned checkpoint included
    assert exp.finetuned is not None and exp.finetuned.is_file()


def test_try_it_first_runs_as_written_and_make_example_prints_the_same_commands(tmp_path):
    first = blocks(OWN)[0]
    assert "make-example" in first.text
    walk = Walk(tmp_path, _app_opens)
    ran = walk.run([first])
    printed = [line.strip() for line in ran[0].output.splitlines() if line.startswith("  ")]
    readme = [" ".join(words) for words in shell_lines(first.text)[1:]]
    assert [" ".join(line.split()) for line in printed] == readme  # the README shows what the command prints
    assert walk.cwd == (tmp_path / "my-first-project").resolve()
    assert "wrote checkpoints/finetuned.safetensors" in ran[1].output
    assert "ID test" in ran[2].output and "Dark" in ran[2].output and "alpha choices" in ran[2].output


def _stand_ins(root, monkeypatch) -> None:
    """Tiny weights and images where the README's experiment looks, under the name ViT-B-32 (restored after)."""
    monkeypatch.setattr(factory, "_MODEL_CONFIG_PATHS", list(factory._MODEL_CONFIG_PATHS))
    monkeypatch.setattr(factory, "_MODEL_CONFIGS", factory._MODEL_CONFIGS)
    (root / "configs").mkdir()
    (root / "configs" / "ViT-B-32.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(root / "configs" / "ViT-B-32.json")
    torch.manual_seed(0)
    save_checkpoint(root / "checkpoints" / "vit_b32_laion2b.safetensors", open_clip.create_model("ViT-B-32").state_dict())
    classes = ["goldfish", "great white shark", "tiger shark"]
    colours = ["red square", "green circle", "blue stripes"]  # the stand-in pictures, one look per class
    for name, count in [("train", 4), ("test", 3), ("heldout", 2)]:
        write_folder(root / "data" / "mine" / name, count, seed=len(name), classes=colours)
        for colour, cls in zip(colours, classes, strict=True):
            (root / "data" / "mine" / name / colour).rename(root / "data" / "mine" / name / cls)
    wnids = {"n01443537": "goldfish", "n01491361": "great white shark"}
    for wnid, colour in zip(wnids, colours, strict=False):
        write_folder(root / "data" / "mine-sketches", 2, seed=9, shifted=True, classes=[colour])
        (root / "data" / "mine-sketches" / colour).rename(root / "data" / "mine-sketches" / wnid)
    (root / "data" / "sketch-folders.json").write_text(json.dumps(wnids))


def test_own_models_walk_runs_as_written_from_the_project_folder(tmp_path, monkeypatch):
    _stand_ins(tmp_path, monkeypatch)
    steps = blocks(OWN.split(OTHER_SOURCES)[0])[1:]  # the other libraries' snippets: tests/test_hf_clip.py
    assert [b.lang for b in steps] == ["toml", "bash", "bash"] and steps[0].target == "experiments/my-exp.toml"
    ran = Walk(tmp_path, _app_opens).run(steps)
    assert [r.argv[0] for r in ran] == ["finetune", "sweep"]
    assert "note:" not in ran[0].output  # --out wrote the very file the experiment reads
    assert "Sketches" in ran[1].output and "My ID test set" in ran[1].output


def test_finetune_says_when_the_experiment_reads_another_checkpoint(tmp_path):
    """The trap of the old README: --out starts here, the experiment's paths at its own folder."""
    run_cli(["make-example", "project"], tmp_path)
    project = tmp_path / "project"
    ran = run_cli(["finetune", "--experiment", "experiments/tiny.toml", "--train", "data/train", "--out",
                   "elsewhere.safetensors", "--epochs", "1", "--batch-size", "8"], project)
    assert f"reads its fine-tuned checkpoint from {project.resolve() / 'checkpoints/finetuned.safetensors'}" in ran.output
    assert f"not from {project.resolve() / 'elsewhere.safetensors'}" in ran.output
    assert CLI == ["python", "-m", "wiseft_explorer"]


def test_the_models_page_reads_typed_paths_from_where_the_app_started_and_saves_them_absolute(tiny, tmp_path,
                                                                                               monkeypatch):
    from tiny import CLASSES, TEMPLATES, TINY_NAME

    from wiseft_explorer.experiment import relative_paths_note
    from wiseft_explorer.ui.builder import save_experiment

    form = {"name": "typed", "model": TINY_NAME, "pretrained": "zeroshot.safetensors", "config": tiny.config.name,
            "finetuned": "finetuned.safetensors", "classes": "\n".join(CLASSES), "templates": "\n".join(TEMPLATES),
            "id_source": "id", "nshifts": 0}
    monkeypatch.chdir(tiny.root)  # the app started here: typed paths start here
    path, _ = save_experiment(form, tmp_path / "experiments")
    assert path is not None
    monkeypatch.chdir(tmp_path)  # read from elsewhere, the saved file's paths still hold
    exp = load_experiment(path)
    assert exp.zeroshot.pretrained == str(tiny.zeroshot.resolve()) and exp.finetuned == tiny.finetuned.resolve()
    assert exp.id_set.source == str(tiny.id_dir.resolve())
    assert str(tiny.root) in relative_paths_note(tiny.root)


def test_make_example_refuses_a_folder_that_holds_files(tmp_path):
    from wiseft_explorer.cli import main

    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["make-example", str(tmp_path)]) == 2  # one line naming the fix, nothing overwritten
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]
