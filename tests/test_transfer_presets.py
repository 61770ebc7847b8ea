"""The transfer datasets' presets (CIFAR-100, Stanford Cars, DTD, SUN397, Food101): CLIP's class lists kept as data,
each split read from a fake copy of its released layout in torchvision's class order, the example experiments, and a
transfer experiment swept by the CLI and shown by the Explorer."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fake_transfer import (
    CARS,
    FOOD,
    SUN,
    dtd_lines,
    fake_cifar100_bin,
    fake_dtd,
    fake_food101,
    fake_stanford_cars,
    fake_sun397,
)
from libkit import cli_env, copy_example

from wiseft_explorer.data import load_eval_set
from wiseft_explorer.experiment import (
    DatasetSpec,
    ExperimentError,
    class_list,
    load_experiment,
    template_list,
)

REPO = Path(__file__).resolve().parent.parent
DATASETS = ("cifar100", "stanford-cars", "dtd", "sun397", "food101")
FAKES = {"cifar100": fake_cifar100_bin, "stanford-cars": fake_stanford_cars, "dtd": fake_dtd, "sun397": fake_sun397,
         "food101": fake_food101}


def _load(key: str, source: Path, **kw):
    return load_eval_set(DatasetSpec(name=key, source=str(source), preset=key, **kw),
                         class_list(key.removesuffix("-train")))


def test_clip_class_lists_and_prompts_are_data_with_their_source():
    from wiseft_explorer.experiment.labelsets import clip_prompts

    assert "openai/CLIP, data/prompts.md" in clip_prompts()["source"]
    sizes = {key: (len(class_list(key)), len(template_list(key))) for key in DATASETS}
    assert sizes == {"cifar100": (100, 18), "stanford-cars": (196, 8), "dtd": (47, 8), "sun397": (397, 2),
                     "food101": (101, 1)}
    assert class_list("cifar100")[:2] == ("apple", "aquarium fish") and class_list("dtd")[-1] == "zigzagged"
    assert class_list("stanford-cars")[0] == "AM General Hummer SUV 2000"
    assert class_list("sun397")[8] == "apartment building outdoor" and class_list("food101")[0] == "apple pie"
    assert template_list("cifar100") == template_list("cifar10")  # CLIP published the same 18 for both
    assert template_list("food101") == ("a photo of {}, a type of food.",)


# scipy.io.savemat(f, {"annotations": 3 structs (class uint8, fname, bbox_x1 uint16), "class_names": a 1x2 cell,
# "grid": np.arange(6.).reshape(2, 3)}, do_compression=True), by scipy 1.15.3: the reader needs no scipy.
SCIPY_MAT = (
    "TUFUTEFCIDUuMCBNQVQtZmlsZSBQbGF0Zm9ybTogcG9zaXgsIENyZWF0ZWQgb246IE1vbiBEZWMgIDcgMDU6MjQ6MjQgMjAyNgAAAAAA"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABSU0PAAAAmQAAAHic42NgYOhgYmBgA9IcQAxkggEr"
    "lM8IxMxQmhuIE/Py8ksSSzLz84qh6ljg6iSAODknsRgkk5aXmJsKpJOS8iviKwwZ+IBsAwaEPZxY7IFhBrA7GMFyIH0OSPpYsOjjRNIn"
    "AOUbAIGhXlZBOlQc3X5uAvazAF2gw4ipjxh3H6HQ3UYUupsdiz5i3M1IobuNKXQ3iA0Ac9EYwg8AAAB8AAAAeJzjY2BgeAHEbEDMAcSM"
    "DBDAisRngtLcQJyck1hcHJ+XmJtaDFbHB8QBSPpZsOiXQjJXAMp39FVwT81LLUrMUfAozc1NLVIIDg1TMDIwMGAg2lw5NHNB/KDEXAVn"
    "/TAF58Si9HyFsMQ8Bd/MvMwyIG1kYGjEwAAABoYYYw8AAAA6AAAAeJzjY2BgSABiNiDmgNIgwArlMwExMxAzMrAwpBdlpnAC2QYM6IDD"
    "AUJ/sIfQAlA+A5QWcQAA1VsE1A=="
)


def test_the_mat_reader_reads_what_matlab_and_scipy_write(tmp_path):
    from fake_transfer import write_mat

    from wiseft_explorer.data.matlab import MatFileError, read_mat

    path = tmp_path / "scipy.mat"
    path.write_bytes(base64.b64decode(SCIPY_MAT))
    got = read_mat(path)
    assert got["class_names"] == ["AM General Hummer SUV 2000", "Ram C/V Cargo Van Minivan 2012"]
    assert [(a["fname"], int(a["class"][0, 0]), int(a["bbox_x1"][0, 0])) for a in got["annotations"]] == [
        ("00001.jpg", 5, 300), ("00002.jpg", 196, 7), ("00003.jpg", 1, 1)]
    assert got["grid"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]  # column-major on disk, rows here
    for compress in (True, False):  # the tests' own writer (its files load in scipy, checked once by hand)
        again = read_mat(write_mat(tmp_path / f"{compress}.mat", {"names": ["a", "bc"], "n": 7}, compress))
        assert again["names"] == ["a", "bc"] and again["n"].tolist() == [[7]]
    (tmp_path / "v73.mat").write_bytes(b"MATLAB 7.3 MAT-file".ljust(512) + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(MatFileError, match="v7.3 HDF5"):
        read_mat(tmp_path / "v73.mat")


@pytest.mark.parametrize("split", ["test", "train"])
def test_cifar100_reads_fine_labels_and_pixels_and_refuses_the_pickles(tmp_path, split):
    images, fine, coarse = fake_cifar100_bin(tmp_path)
    key = "cifar100" if split == "test" else "cifar100-train"
    ev = _load(key, tmp_path)
    assert ev.labels.tolist() == fine.tolist() != coarse.tolist() and np.array_equal(ev.raw, images)
    py = tmp_path / "cifar-100-python"
    py.mkdir()
    (py / "test").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ExperimentError, match="Python release, whose files are pickles"):
        _load(key, py)


@pytest.mark.parametrize("compress", [True, False])
def test_stanford_cars_reads_torchvisions_layout_and_the_devkit_mat_files(tmp_path, compress):
    base = fake_stanford_cars(tmp_path, compress)
    for key, split in (("stanford-cars", "test"), ("stanford-cars-train", "train")):
        ev = _load(key, tmp_path)  # the folder holding stanford_cars/, as torchvision's root
        assert [Path(p).name for p in ev.paths] == [n for n, _ in CARS[split]]
        assert ev.labels.tolist() == [cls - 1 for _, cls in CARS[split]]  # annotations count classes from 1
        assert _load(key, base).paths == ev.paths
    (base / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(ExperimentError, match="cars_test_annos_withlabels.mat not found.*Expected layout: "
                                              "stanford_cars/"):
        _load("stanford-cars", base)


def test_dtd_reads_partition_1_as_torchvisions_dtd_does(tmp_path):
    from torchvision.datasets import DTD

    base = fake_dtd(tmp_path / "dtd")  # torchvision wants ROOT/dtd/dtd/: the release unpacked inside dtd/
    for split in ("test", "train"):
        ev = _load("dtd" if split == "test" else "dtd-train", base)
        theirs = DTD(tmp_path, split=split, partition=1, download=False)
        assert theirs.classes == [c.replace(" ", "_") for c in class_list("dtd")]
        assert ev.paths == [str(p) for p in theirs._image_files] and ev.labels.tolist() == theirs._labels
        assert [Path(p).parent.name for p in ev.paths] == [line.split("/")[0] for line in dtd_lines(split)]


def test_sun397_reads_the_official_partition_in_classname_order(tmp_path):
    from torchvision.datasets import SUN397

    base = fake_sun397(tmp_path)
    theirs = SUN397(tmp_path, download=False).classes  # ClassName.txt's order; torchvision reads no partition
    for key, file in (("sun397", "Testing_01.txt"), ("sun397-train", "Training_01.txt")):
        ev = _load(key, base)
        assert [p.removeprefix(str(base)) for p in ev.paths] == SUN[file]
        assert [theirs[i] for i in ev.labels] == [line[3:].rsplit("/", 1)[0] for line in SUN[file]]
    assert class_list("sun397")[_load("sun397", base).labels[0]] == "apartment building outdoor"
    shutil.rmtree(base / "Partitions")
    with pytest.raises(ExperimentError, match="Partitions/Testing_01.txt not found .*Partitions.zip"):
        _load("sun397", base)


def test_food101_reads_meta_json_as_torchvisions_food101_does(tmp_path):
    from torchvision.datasets import Food101

    base = fake_food101(tmp_path)
    for split in ("test", "train"):
        ev = _load("food101" if split == "test" else "food101-train", base)
        theirs = Food101(tmp_path, split=split, download=False)
        assert ev.paths == [str(p) for p in theirs._image_files] and ev.labels.tolist() == theirs._labels
        assert len(ev) == sum(len(ids) for ids in FOOD[split].values())
    assert [class_list("food101")[i] for i in _load("food101", base).labels] == ["waffles", "baklava"]


def test_a_dataset_of_other_classes_or_with_missing_files_is_refused(tmp_path):
    base = fake_sun397(tmp_path)
    lines = (base / "ClassName.txt").read_text().splitlines()
    (base / "ClassName.txt").write_text("\n".join([lines[1], lines[0], *lines[2:]]))
    with pytest.raises(ExperimentError, match="class 0 is 'airplane_cabin', but CLIP's class list has 'abbey'"):
        _load("sun397", base)
    (base / "ClassName.txt").write_text("\n".join(lines[:-1]))
    with pytest.raises(ExperimentError, match="names 396 classes, not 397"):
        _load("sun397", base)
    food = fake_food101(tmp_path / "f")
    (food / "images" / "waffles" / "2000.jpg").unlink()
    with pytest.raises(ExperimentError, match=r"waffles/2000.jpg: listed in the split file but not found.*"
                                              "skip_unreadable = true"):
        _load("food101", food)
    assert len(_load("food101", food, skip_unreadable=True)) == 1


def _example_data(data: Path) -> None:
    """Fake copies of every transfer dataset where the examples' comments put them."""
    for key in DATASETS:
        FAKES[key](data)
    meta = data / "cifar-100-binary" / "fine_label_names.txt"
    assert meta.is_file()


@pytest.mark.parametrize("key", DATASETS)
def test_the_transfer_examples_read_fake_copies_of_the_real_datasets(tmp_path, key):
    from wiseft_explorer.data import check_experiment

    toml = copy_example(tmp_path, f"transfer-{key}", ("vit_b32_openai.safetensors",))
    _example_data(tmp_path / "data")
    exp = load_experiment(toml, for_finetuning=True)
    checks = check_experiment(exp)
    assert [c.error for c in checks] == [None] * len(checks) and [s.preset for s in exp.eval_sets] == [key]
    assert exp.classnames == class_list(key)
    assert exp.templates == template_list("openai" if key == "cifar100" else key)
    text = toml.read_text()  # the commented held-out set reads the training split
    held_out = text.replace("# [id_val]", "[id_val]").replace("# name", "name").replace("# preset", "preset")
    toml.write_text(held_out.replace("# source", "source").replace("# limit", "limit"))
    assert load_experiment(toml, for_finetuning=True).id_val.preset == f"{key}-train"


def _dtd_experiment(tmp_path: Path, tiny) -> Path:
    from tiny import TINY_NAME, fake_finetune

    from wiseft_explorer.core import build_zeroshot, classifier_metadata, load_clip, save_checkpoint
    from wiseft_explorer.experiment import ModelSpec

    names = class_list("dtd")
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    ft = fake_finetune(build_zeroshot(clip, names, template_list("dtd")), seed=2)
    ft_path = save_checkpoint(tmp_path / "ft.safetensors", ft.state_dict(),
                              classifier_metadata(clip, names, recipe={"kind": "test-perturbation"}, seed=2))
    toml = tmp_path / "transfer-dtd.toml"
    toml.write_text(f'name = "DTD tiny"\ndevice = "cpu"\nbatch_size = 16\nworkers = 0\n'
                    f'cache_dir = "{tmp_path / "cache"}"\n[zeroshot]\nmodel = "{TINY_NAME}"\n'
                    f'pretrained = "{tiny.zeroshot}"\nconfig = "{tiny.config}"\n[finetuned]\n'
                    f'checkpoint = "{ft_path}"\n[id]\npreset = "dtd"\nsource = "{fake_dtd(tmp_path)}"\n')
    return toml


def test_the_cli_sweeps_a_transfer_experiment_and_the_explorer_shows_it(tiny, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep

    toml = _dtd_experiment(tmp_path, tiny)  # no [classes]: the dtd preset brings CLIP's names and prompts
    runtime = ExperimentRuntime.from_path(toml)
    assert runtime.experiment.templates == template_list("dtd")
    table = run_sweep(runtime).table()
    out = tmp_path / "results.jsonl"
    run = subprocess.run([sys.executable, "-m", "wiseft_explorer", "sweep", "--experiment", str(toml), "--out",
                          str(out), "--quiet"], capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    rows = {row["alpha"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert len(rows) == 21 and all(abs(rows[a]["DTD:top1"] - table.loc[a, "DTD"]) < 1e-9 for a in (0.0, 0.5, 1.0))
    monkeypatch.setenv("WISEFT_EXPERIMENT", str(toml))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180).run()
    deadline = time.monotonic() + 180
    while any("being filled in" in i.value for i in at.info):
        assert time.monotonic() < deadline, "the sweep never finished in the app"
        time.sleep(1.0)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    values = {m.label: m.value for m in at.metric}
    assert values["ID at α = 0.5"] == f"{100 * table.loc[0.5, 'DTD']:.1f}%", values
