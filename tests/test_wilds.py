"""The WILDS presets (iWildCam, FMoW) on fake copies of their releases: splits, labels, regions, their metrics
end to end (a tiny CLIP swept by the CLI, the JSONL's keys, the Explorer's cards and axes), and the examples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_wilds import FMOW_ROWS, IWILDCAM_ROWS, fake_fmow, fake_iwildcam
from libkit import cli_env, copy_example
from test_metrics import hand_macro_f1

from wiseft_explorer.data.wilds_sets import read_fmow, read_iwildcam
from wiseft_explorer.experiment.wilds_labels import FMOW_CLASSES

REPO = Path(__file__).resolve().parent.parent


def test_iwildcam_splits_come_from_metadata_csv(tmp_path):
    folder = fake_iwildcam(tmp_path)
    for split in ("id_test", "test"):
        found = read_iwildcam(tmp_path, key="iwildcam-test", split=split)  # the parent folder works too
        rows = [i for i, (s, _) in enumerate(IWILDCAM_ROWS) if s == split]
        assert found.labels.tolist() == [IWILDCAM_ROWS[i][1] for i in rows]
        assert found.paths == [str(folder / "train" / f"img{i}.jpg") for i in rows]


def test_fmow_splits_by_year_and_regions_leave_other_unranked(tmp_path):
    folder = fake_fmow(tmp_path)
    ood, iid = read_fmow(folder, key="fmow-test", ood=True), read_fmow(folder, key="fmow-id-test", ood=False)
    # OOD test: split 'test' from 2016 on (rows 5, 6, 7, 9); ID test: 'test' before 2013 (rows 2, 3).
    assert ood.paths == [str(folder / "images" / f"rgb_img_{i}.png") for i in (5, 6, 7, 9)]
    assert iid.paths == [str(folder / "images" / f"rgb_img_{i}.png") for i in (2, 3)]
    assert ood.labels.tolist() == [FMOW_CLASSES.index(FMOW_ROWS[i][1]) for i in (5, 6, 7, 9)]
    assert ood.regions.tolist() == [1, 2, -1, 0]  # Africa, Americas, Europe ranked; ZZZ is "Other"


def test_a_missing_image_names_the_file_and_the_layout(tmp_path):
    from wiseft_explorer.experiment import PresetError

    folder = fake_iwildcam(tmp_path)
    (folder / "train" / "img2.jpg").unlink()
    with pytest.raises(PresetError, match="img2.jpg is listed in the metadata but missing.*Expected layout"):
        read_iwildcam(folder, key="iwildcam-test", split="test")


def _experiment(tmp_path: Path, tiny, classes: str, sets: str) -> Path:
    from tiny import TINY_NAME, fake_finetune

    from wiseft_explorer.core import build_zeroshot, classifier_metadata, load_clip, save_checkpoint
    from wiseft_explorer.experiment import ModelSpec, class_list

    names = class_list(classes)
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    ft = fake_finetune(build_zeroshot(clip, names, ["a photo of a {}."]), seed=1)
    save_checkpoint(tmp_path / "ft.safetensors", ft.state_dict(), classifier_metadata(clip, names))
    toml = tmp_path / "wilds.toml"
    toml.write_text(f'device = "cpu"\nbatch_size = 4\n[zeroshot]\nmodel = "{TINY_NAME}"\npretrained = '
                    f'"{tiny.zeroshot}"\nconfig = "{tiny.config}"\n[finetuned]\ncheckpoint = "ft.safetensors"\n'
                    f'[classes]\nnames = "{classes}"\ntemplates = ["a photo of a {{}}."]\n{sets}')
    return toml


def test_the_cli_sweeps_a_wilds_experiment_with_its_metrics_named(tiny, tmp_path):
    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
    from wiseft_explorer.presentation import cards, plots

    cams, fmow = fake_iwildcam(tmp_path), fake_fmow(tmp_path)
    toml = _experiment(tmp_path, tiny, "iwildcam",
                       f'[id]\nname = "IWildCamID"\npreset = "iwildcam-id-test"\nsource = "{cams}"\n'
                       f'[[shifts]]\nname = "IWildCamOOD"\npreset = "iwildcam-test"\nsource = "{cams}"\n')
    out = tmp_path / "results.jsonl"
    run = subprocess.run([sys.executable, "-m", "wiseft_explorer", "sweep", "--experiment", str(toml), "--alpha",
                          "0", "--alpha", "0.5", "--alpha", "1", "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"IWildCamID:F1-macro_all", "IWildCamOOD:F1-macro_all", "avg_shifts:F1-macro_all"} <= set(rows[0])
    result = run_sweep(ExperimentRuntime.from_path(toml), [0.0, 0.5, 1.0])  # the CLI's cache, read back
    for row in rows:
        p = result.predictions["IWildCamOOD"][row["alpha"]]
        labels = result.set_metrics["IWildCamOOD"].labels
        assert row["IWildCamOOD:F1-macro_all"] == pytest.approx(hand_macro_f1(p.pred.tolist(), labels.tolist()))
    shown = cards.metric_cards(result, 0.5, result.accuracies(0.5))
    assert shown[0][0].label.startswith("ID macro F1") and shown[1][0].label.startswith("Shifts macro F1")
    fig = plots.id_vs_shift(result.table(), "IWildCamID", "avg_shifts", 0.5,
                            metrics=(result.metric("IWildCamID"), result.metric("avg_shifts")))
    assert fig.layout.xaxis.title.text == "ID macro F1" and fig.layout.yaxis.title.text.startswith("Shift macro F1")
    alpha_fig = plots.accuracy_vs_alpha(result.table(), result.sets, 0.5, metrics=result.metrics)
    assert alpha_fig.layout.yaxis.title.text == "macro F1"

    # FMoW's worst region, mixed with a top-1 set in one experiment: the average is a 'mean' of mixed metrics.
    toml = _experiment(tmp_path, tiny, "fmow", f'[id]\nname = "FMOWOOD"\npreset = "fmow-test"\nsource = "{fmow}"\n'
                       f'[[shifts]]\nname = "Folder"\nsource = "{tmp_path / "folder"}"\n'
                       f'[[shifts]]\nname = "FMOWID"\npreset = "fmow-id-test"\nsource = "{fmow}"\n')
    for name in ("airport", "zoo"):
        shutil.copytree(fmow / "images", tmp_path / "folder" / name)
    result = run_sweep(ExperimentRuntime.from_path(toml), [0.0, 1.0])
    assert result.metrics == {"FMOWOOD": "acc_worst_region", "FMOWID": "acc_worst_region"}
    assert result.metric("avg_shifts") == "mean" and "Folder:top1" in result.jsonl_rows()[0]
    p, metric = result.predictions["FMOWOOD"][1.0], result.set_metrics["FMOWOOD"]
    right = (p.pred.numpy() == metric.labels)
    by_region = [right[metric.groups == g].mean() for g in np.unique(metric.groups) if g >= 0]
    assert result.top1s["FMOWOOD"][1.0] == pytest.approx(min(by_region))


@pytest.mark.parametrize("example", ["wilds-iwildcam-vit-b32", "wilds-fmow-vit-b32"])
def test_the_wilds_examples_read_fake_copies_of_the_releases(tmp_path, example):
    from wiseft_explorer.data import check_experiment
    from wiseft_explorer.experiment import load_experiment

    toml = copy_example(tmp_path, example, ("zeroshot.safetensors", "finetuned.safetensors"))
    (fake_iwildcam if "iwildcam" in example else fake_fmow)(tmp_path / "data")
    exp = load_experiment(toml, for_finetuning=True)
    checks = check_experiment(exp)
    assert [c.error for c in checks] == [None] * len(checks)
    expected = [2, 5] if "iwildcam" in example else [2, 4]
    assert [c.images for c in checks] == expected
