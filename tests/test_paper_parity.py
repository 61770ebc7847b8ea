"""The README's walk from the paper's own checkpoints to a sweep and the app, run on tiny stand-ins, and its
numbers against the paper's evaluation and interpolation written out here on the same tensors."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from fake_datasets import cifar_pixels, fake_cifar10_bin
from libkit import REPO, set_images
from paper_model import paper_code, preprocessing, torch_save, zero_shot_weights

from wiseft_explorer.cli import main
from wiseft_explorer.core import CheckpointError, load_checkpoint, load_clip
from wiseft_explorer.evaluation import ExperimentRuntime
from wiseft_explorer.experiment import CIFAR10_CLASSES, ModelSpec, template_list

TINY_VIT = "wiseft-tiny-vit-quickgelu"
TINY_GELU = "wiseft-tiny-vit-gelu"
VISION = {"image_size": 32, "patch_size": 8, "width": 64, "layers": 2, "head_width": 64}
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1}
EXAMPLE = "wiseft_explorer/assets/experiments/cifar10-vit-b32.toml.example"


def readme_walk() -> list[str]:
    """The commands of the fenced bash blocks of the README's "Reproduce the paper's evaluation" section."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Reproduce the paper's evaluation", 1)[1].split("\n## ", 1)[0]
    lines = "\n".join(re.findall(r"```bash\n(.*?)```", section, flags=re.S)).replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@dataclass
class Walk:
    root: Path
    outputs: dict[str, str]
    zeroshot: torch.nn.Module  # the paper's classifiers, as pickled
    finetuned: torch.nn.Module


def _paper_checkpoints(root: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """zeroshot.pt and finetuned/checkpoint_10.pt as the paper's src/wise_ft.py writes them (pickle.dump)."""
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    with paper_code() as code:
        torch.manual_seed(0)
        clip = code["model"].CLIP(16, VISION["image_size"], VISION["layers"], VISION["width"], VISION["patch_size"],
                                  TEXT["context_length"], TEXT["vocab_size"], TEXT["width"], 1, TEXT["layers"])
        modeling = code["modeling"]
        encoder = modeling.ImageEncoder(clip, preprocessing(code), preprocessing(code), keep_lang=True)
        head = modeling.ClassificationHead(True, zero_shot_weights(clip, tokenizer, CIFAR10_CLASSES,
                                                                   template_list("openai")))
        delattr(encoder.model, "transformer")
        zeroshot = modeling.ImageClassifier(encoder, head, process_images=False)
        torch_save(zeroshot, root / "paper" / "zeroshot.pt")
        finetuned = copy.deepcopy(zeroshot)
        finetuned.process_images = True
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():  # a stand-in for fine-tuning: every weight moves
            for p in finetuned.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=gen) * (p.std() if p.numel() > 1 else 0.1))
        torch_save(finetuned, root / "paper" / "finetuned" / "checkpoint_10.pt")
    return zeroshot, finetuned


def _datasets(data: Path) -> None:
    images, labels = cifar_pixels(12, seed=1)
    fake_cifar10_bin(data, images, labels)
    images, labels = cifar_pixels(9, seed=2)
    (data / "CIFAR-10.1" / "datasets").mkdir(parents=True)
    np.save(data / "CIFAR-10.1" / "datasets" / "cifar10.1_v6_data.npy", images)
    np.save(data / "CIFAR-10.1" / "datasets" / "cifar10.1_v6_labels.npy", labels)
    images, labels = cifar_pixels(10, seed=3)
    (data / "cifar10.2").mkdir()
    np.save(data / "cifar10.2" / "cifar102_test.npy", np.array({"images": images, "labels": labels}, dtype=object),
            allow_pickle=True)


def _config(folder: Path, name: str, quick_gelu: bool) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"embed_dim": 16, "quick_gelu": quick_gelu, "vision_cfg": VISION, "text_cfg": TEXT}))
    return path


def _run(command: str, example: Path) -> tuple[int, str]:
    """One command of the walk: the CLI in this process (imports paid once), shell helpers as they read."""
    argv = shlex.split(command)
    if argv[:3] == ["python", "-m", "wiseft_explorer"]:
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = main(argv[3:])
        return code, out.getvalue()
    if argv[:2] == ["mkdir", "-p"]:
        for folder in argv[2:]:
            Path(folder).mkdir(parents=True, exist_ok=True)
        return 0, ""
    if argv[0] == "cp" and len(argv) == 3:
        assert argv[1] == EXAMPLE, "the walk copies the shipped CIFAR example"
        shutil.copy(example, argv[2])  # the shipped example, on the tiny model
        return 0, ""
    if argv == ["wiseft-explorer", "app"]:
        return 0, "app: not started here"  # what it shows is checked in test_the_app_lists_the_walks_experiment
    raise AssertionError(f"the README's walk has a command this test does not know how to run: {command}")


@pytest.fixture(scope="module")
def walk(tmp_path_factory) -> Walk:
    root = tmp_path_factory.mktemp("paper-walk")
    zeroshot, finetuned = _paper_checkpoints(root)
    _datasets(root / "data")
    stand_ins = root / "stand-ins"
    stand_ins.mkdir()
    config = _config(stand_ins, TINY_VIT, quick_gelu=True)
    shipped = (REPO / EXAMPLE).read_text(encoding="utf-8")
    assert 'model = "ViT-B-32-quickgelu"' in shipped
    example = stand_ins / "cifar10-vit-b32.toml.example"
    tiny = shipped.replace('model = "ViT-B-32-quickgelu"', f'model = "{TINY_VIT}"\nconfig = "{config}"')
    example.write_text(tiny.replace('device = "auto"', 'device = "cpu"'))
    outputs: dict[str, str] = {}
    cwd = Path.cwd()
    os.chdir(root)
    try:
        for command in readme_walk():
            code, output = _run(command, example)
            assert code == 0, f"{command}\n{output}"
            outputs[command] = output
    finally:
        os.chdir(cwd)
    return Walk(root, outputs, zeroshot, finetuned)


def test_the_readme_walk_converts_the_paper_pair_without_its_code(walk):
    commands = readme_walk()
    assert any(c.startswith("python -m wiseft_explorer convert --trust-pickle paper/zeroshot.pt") for c in commands)
    zs, zs_meta = load_checkpoint(walk.root / "checkpoints" / "zeroshot.safetensors")
    ft, ft_meta = load_checkpoint(walk.root / "checkpoints" / "finetuned.safetensors")
    assert zs_meta["activation"] == ft_meta["activation"] == "quick_gelu"
    assert set(zs) == set(ft) and "head.weight" in zs and not any(k.startswith("transformer.") for k in zs)
    paper = {k.replace("image_encoder.model.", "").replace("classification_head.", "head."): v
             for k, v in walk.zeroshot.state_dict().items()}
    assert all(torch.equal(v, paper[k]) for k, v in zs.items())
    assert ft_meta["zeroshot_file"] == "zeroshot.safetensors" and len(ft_meta["zeroshot_digest"]) == 16
    sweep = next(out for c, out in walk.outputs.items() if " sweep " in c)
    assert "zero-shot head: the one stored in zeroshot.safetensors" in sweep and "not used" in sweep
    assert (walk.root / "results" / "cifar10-paper.jsonl").is_file()


def test_the_app_lists_the_walks_experiment(walk, monkeypatch):
    from wiseft_explorer.experiment import experiment_label, listed_experiments

    monkeypatch.chdir(walk.root)
    monkeypatch.delenv("WISEFT_EXPERIMENTS_DIR", raising=False)
    listed = [p.resolve() for p in listed_experiments()]
    toml = (walk.root / "experiments" / "cifar10-vit-b32.toml").resolve()
    assert toml in listed and experiment_label(toml).endswith("cifar10-vit-b32.toml")
    # "Open results" imports the walk's JSONL (and its per-image file) into this machine's cache.
    from wiseft_explorer.evaluation import import_results

    runtime = ExperimentRuntime.from_path(toml)
    assert import_results(runtime, walk.root / "results" / "cifar10-paper.jsonl").complete


def test_the_sweep_gives_the_paper_codes_predictions_image_for_image(walk):
    from wiseft_explorer.evaluation import sweep_predictions
    from wiseft_explorer.results import ALPHA_GRID

    runtime = ExperimentRuntime.from_path(walk.root / "experiments" / "cifar10-vit-b32.toml")
    ours = sweep_predictions(walk.root / "results" / "cifar10-paper.per-image.safetensors")
    theta_0 = {k: v.clone() for k, v in walk.zeroshot.state_dict().items()}
    theta_1 = {k: v.clone() for k, v in walk.finetuned.state_dict().items()}
    model, working = copy.deepcopy(walk.finetuned).eval(), runtime.new_working()
    assert runtime.set_names == ["CIFAR-10", "CIFAR-10.1", "CIFAR-10.2"]
    for name in runtime.set_names:
        images, labels = set_images(runtime, name), runtime.eval_set(name).labels
        for alpha in ALPHA_GRID:
            # The paper's src/wise_ft.py: _merge over every key, load_state_dict, evaluate = argmax of the logits.
            model.load_state_dict({k: (1 - alpha) * theta_0[k] + alpha * theta_1[k] for k in theta_0})
            with torch.no_grad():
                paper_logits = model(images)
            paper_pred = paper_logits.argmax(dim=1)
            got = ours[name][alpha]
            pred = torch.full_like(paper_pred, -1)
            pred[got.index.long()] = got.pred.long()
            assert torch.equal(pred, paper_pred), (name, alpha)
            assert got.top1 == pytest.approx((paper_pred == labels).float().mean().item())
            if alpha not in (0.0, 0.5, 1.0):
                continue
            with torch.no_grad():  # and the logits themselves, not only their argmax (GELU would differ here)
                logits = runtime.classifier_at(working, alpha)(images)
            torch.testing.assert_close(logits, paper_logits, rtol=1e-4, atol=1e-4)


def test_a_gelu_model_is_refused_for_a_quick_gelu_checkpoint(walk):
    config = _config(walk.root / "stand-ins", TINY_GELU, quick_gelu=False)
    with pytest.raises(CheckpointError) as info:
        load_clip(ModelSpec(TINY_GELU, str(walk.root / "checkpoints" / "zeroshot.safetensors"), config))
    message = str(info.value)
    assert "\n" not in message and "records activation quick_gelu" in message and "builds gelu" in message
