"""The video shifts (data.video_sets) on fake copies of their releases: labels and groups from the metadata, and
a tiny sweep's pm-10 against a hand computation from the paper's definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_video import VID_GROUPS, VID_LABELS, VID_PMSETS, fake_imagenet_vid

from wiseft_explorer.data.video_sets import read_imagenet_vid


def test_imagenet_vid_reads_anchors_frames_labels_and_groups(tmp_path):
    folder = fake_imagenet_vid(tmp_path)
    found = read_imagenet_vid(tmp_path / "imagenet_vid_ytbb_robust")  # the release's top folder works too
    keys = [str(Path(p).relative_to(folder)) for p in found.paths]
    assert sorted(keys) == sorted(k for k in VID_LABELS if not k.startswith("val/d"))  # only the pm-sets' frames
    assert found.groups == (VID_GROUPS[0], VID_GROUPS[1], VID_GROUPS[2]) and found.class_indices == [3, 5, 10]
    assert found.labels.tolist() == [min(VID_GROUPS[VID_LABELS[k][0]]) for k in keys]
    frames, right = found.pmk
    by_anchor = {keys[row[0]]: sorted(keys[i] for i in row[1:] if i >= 0) for row in frames}
    assert by_anchor == {a: sorted(f) for a, f in VID_PMSETS.items()}
    assert right[keys.index("val/a/000011.JPEG")].tolist() == [3, 10, 7, 11, 12]  # both its classes' members count
    assert found.label_names == {3: "airplane", 5: "bear", 10: "bird"}


def test_a_missing_frame_or_file_names_it_and_the_layout(tmp_path):
    from wiseft_explorer.experiment import PresetError

    folder = fake_imagenet_vid(tmp_path)
    (folder / "val/b/000006.JPEG").unlink()
    with pytest.raises(PresetError, match=r"000006.JPEG is listed.*Expected layout: imagenet-vid-robust/"):
        read_imagenet_vid(folder)
    (folder / "metadata/pmsets.json").unlink()
    with pytest.raises(PresetError, match="no metadata/pmsets.json"):
        read_imagenet_vid(folder)


def hand_pm_k(pred_class: dict[str, int], labels: dict[str, list[int]], pmsets: dict[str, list[str]]) -> float:
    """The paper's pm-k: an anchor counts when it and each frame of its pm-set are predicted among their labels."""
    right = [all(pred_class[f] in labels[f] for f in [a, *frames]) for a, frames in pmsets.items()]
    return sum(right) / len(right)


def test_a_tiny_sweep_scores_pm10_as_the_paper_defines_it(tiny, tmp_path):
    from test_wilds import _experiment

    from wiseft_explorer.data import load_eval_set
    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
    from wiseft_explorer.experiment import class_list, load_experiment

    folder = fake_imagenet_vid(tmp_path)
    toml = _experiment(tmp_path, tiny, "imagenet", f'[id]\nname = "Vid"\npreset = "imagenet-vid-robust"\n'
                                                   f'source = "{folder}"\n')
    result = run_sweep(ExperimentRuntime.from_path(toml), [0.0, 0.5, 1.0])
    assert result.metric("Vid") == "pm10" and "Vid:pm10" in result.jsonl_rows()[0]
    ev = load_eval_set(load_experiment(toml).id_set, class_list("imagenet"))
    keys = [str(Path(p).relative_to(folder)) for p in ev.paths]
    group_of = {i: c for c, g in VID_GROUPS.items() for i in g}
    for alpha in (0.0, 0.5, 1.0):
        p = result.predictions["Vid"][alpha]
        assert p.n == len(keys) == 6
        pred_class = {keys[i]: group_of[int(c)] for i, c in zip(p.index.tolist(), p.pred.tolist(), strict=True)}
        assert result.top1s["Vid"][alpha] == pytest.approx(hand_pm_k(pred_class, VID_LABELS, VID_PMSETS))
    assert np.isfinite(result.interval("Vid", 0.5)).all()


def test_pm10_of_chosen_predictions_and_of_a_limited_sample(tmp_path):
    from wiseft_explorer.data import load_eval_set
    from wiseft_explorer.experiment import DatasetSpec, class_list

    folder = fake_imagenet_vid(tmp_path)
    spec = DatasetSpec(name="Vid", source=str(folder), preset="imagenet-vid-robust")
    ev = load_eval_set(spec, class_list("imagenet"))
    keys = [str(Path(p).relative_to(folder)) for p in ev.paths]
    # a: right, 000011 through its second class; b: its frame is wrong; c: an anchor without frames, right.
    pred_class = {"val/a/000010.JPEG": 0, "val/a/000009.JPEG": 0, "val/a/000011.JPEG": 2, "val/b/000005.JPEG": 1,
                  "val/b/000006.JPEG": 0, "val/c/000001.JPEG": 2}
    pred = np.array([VID_GROUPS[pred_class[k]][-1] for k in keys])  # any ImageNet class of the group
    assert ev.metric.value(pred, None, np.arange(len(keys))) == pytest.approx(2 / 3)
    assert hand_pm_k(pred_class, VID_LABELS, VID_PMSETS) == pytest.approx(2 / 3)
    assert ev.metric.units(pred, None, np.arange(len(keys))).tolist() == [True, False, True]  # anchors a, b, c
    # A `limit` sample scores only the anchors whose every frame it holds.
    part = load_eval_set(DatasetSpec(name="Vid", source=str(folder), preset="imagenet-vid-robust", limit=3),
                         class_list("imagenet"))
    held = {str(Path(p).relative_to(folder)) for p in part.paths}
    whole = [a for a, f in VID_PMSETS.items() if {a, *f} <= held]
    assert len(part.metric.frames) == len(whole) < len(VID_PMSETS)


def test_the_video_example_reads_fake_copies_of_the_releases(tmp_path):
    import shutil

    from fake_datasets import fake_imagenet_layout

    from wiseft_explorer.data import check_experiment
    from wiseft_explorer.experiment import BUILTIN_EXPERIMENTS, load_experiment

    example = "video-imagenet-vid-vit-b32"
    toml = tmp_path / "experiments" / f"{example}.toml"
    toml.parent.mkdir()
    shutil.copy(BUILTIN_EXPERIMENTS / f"{example}.toml.example", toml)
    (tmp_path / "checkpoints").mkdir()
    for name in ("zeroshot.safetensors", "finetuned.safetensors"):
        (tmp_path / "checkpoints" / name).write_bytes(b"")
    fake_imagenet_layout(tmp_path / "data" / "imagenet" / "val", "imagenet")
    fake_imagenet_vid(tmp_path / "data")
    exp = load_experiment(toml, for_finetuning=True)
    checks = check_experiment(exp)
    assert [c.error for c in checks] == [None] * len(checks)
    assert [c.images for c in checks] == [1000, 6] and exp.shifts[0].preset == "imagenet-vid-robust"
