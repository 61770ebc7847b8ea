"""The video shifts (data.video_sets) on fake copies of their releases: labels and groups from the metadata, and
a tiny sweep's pm-10 against a hand computation from the paper's definition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fake_video import VID_GROUPS, VID_LABELS, VID_PMSETS, YTBB_EXPECTED, fake_imagenet_vid, fake_ytbb
from libkit import copy_example

from wiseft_explorer.data.video_sets import read_imagenet_vid, read_ytbb, ytbb_classes


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
    """The paper's pm-k: an anchor counts when it and each frame of its pm-set are predicted among their labels
    (YouTube-BB-Robust's frames take their anchor's labels)."""
    right = [all(pred_class[f] in labels[f] for f in [a, *frames]) for a, frames in pmsets.items()]
    return sum(right) / len(right)


def _case(preset: str, root: Path) -> tuple[Path, dict[str, list[int]], dict[str, list[str]], dict[int, int]]:
    """A fake release of `preset`: its folder, each frame's right classes, the pm-sets, ImageNet class -> class."""
    if preset == "imagenet-vid-robust":
        return fake_imagenet_vid(root), VID_LABELS, VID_PMSETS, {i: c for c, g in VID_GROUPS.items() for i in g}
    folder = fake_ytbb(root) / "ytbb_videos"
    labels = {f: sorted(classes) for a, (classes, frames) in YTBB_EXPECTED.items() for f in [a, *frames]}
    pmsets = {a: frames for a, (_, frames) in YTBB_EXPECTED.items()}
    return folder, labels, pmsets, {i: c for c, g in enumerate(ytbb_classes()[1]) for i in g}


@pytest.mark.parametrize("preset", ["imagenet-vid-robust", "ytbb-robust"])
def test_a_tiny_sweep_scores_pm10_as_the_paper_defines_it(tiny, tmp_path, preset):
    from test_wilds import _experiment

    from wiseft_explorer.data import load_eval_set
    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep
    from wiseft_explorer.experiment import class_list, load_experiment
    from wiseft_explorer.presentation import cards

    folder, labels, pmsets, class_of = _case(preset, tmp_path)
    toml = _experiment(tmp_path, tiny, "imagenet", f'[id]\nname = "Vid"\npreset = "{preset}"\n'
                                                   f'source = "{folder.parent}"\n')
    result = run_sweep(ExperimentRuntime.from_path(toml), [0.0, 0.5, 1.0])
    assert result.metric("Vid") == "pm10" and "Vid:pm10" in result.jsonl_rows()[0]
    ev = load_eval_set(load_experiment(toml).id_set, class_list("imagenet"))
    keys = [str(Path(p).relative_to(folder)) for p in ev.paths]
    for alpha in (0.0, 0.5, 1.0):
        p = result.predictions["Vid"][alpha]
        assert p.n == len(keys) == 6
        pred_class = {keys[i]: class_of[int(c)] for i, c in zip(p.index.tolist(), p.pred.tolist(), strict=True)}
        assert result.top1s["Vid"][alpha] == pytest.approx(hand_pm_k(pred_class, labels, pmsets))
    assert np.isfinite(result.interval("Vid", 0.5)).all()
    assert cards.metric_cards(result, 0.5, result.accuracies(0.5))[0][0].label == "ID pm-10 at α = 0.5"


def test_ytbb_keeps_the_reviewed_anchors_and_frames_with_their_classes(tmp_path):
    folder = fake_ytbb(tmp_path) / "ytbb_videos"
    found = read_ytbb(tmp_path / "imagenet_vid_ytbb_robust")
    keys = [str(Path(p).relative_to(folder)) for p in found.paths]
    frames, right = found.pmk
    got = {keys[row[0]]: sorted(keys[i] for i in row[1:] if i >= 0) for row in frames}
    assert got == {a: frames for a, (_, frames) in YTBB_EXPECTED.items()}
    names, groups = ytbb_classes()
    for k, row in zip(keys, right, strict=True):
        anchor = next(a for a, (_, f) in YTBB_EXPECTED.items() if k in [a, *f])
        classes = YTBB_EXPECTED[anchor][0]
        assert set(row[row >= 0].tolist()) - {0} == {i for c in classes for i in groups[c]}  # 0: cow's stand-in
    # cow has no ImageNet class: its frames are labelled by a class of no group, scored 0 as the paper does.
    assert found.labels[keys.index("vidE_900/frame-27.jpg")] == 0 and found.label_names[0] == "cow"
    assert found.class_indices[6] == 0 and found.groups[6] == () and len(found.groups) == 23  # 'none' not scored
    assert names[22] == "none" and [c for c, g in enumerate(groups) if not g] == [6, 8, 14, 18, 22]
    assert groups[1][:3] == (7, 8, 9) and groups[23] == (407, 436, 468, 511, 609, 627, 656, 661, 751, 817)


def test_ytbb_without_its_annotation_files_says_where_they_come_from(tmp_path):
    from wiseft_explorer.experiment import PresetError

    folder = fake_ytbb(tmp_path)
    (folder / "metadata" / "pmk_labels.json").unlink()
    with pytest.raises(PresetError, match=r"no pmk_labels.json.*ytbb-robust_metadata/: copy them"):
        read_ytbb(folder)


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

    from fake_datasets import fake_imagenet_layout

    from wiseft_explorer.data import check_experiment
    from wiseft_explorer.experiment import load_experiment

    toml = copy_example(tmp_path, "video-imagenet-vid-vit-b32", ("zeroshot.safetensors", "finetuned.safetensors"))
    fake_imagenet_layout(tmp_path / "data" / "imagenet" / "val", "imagenet")
    fake_imagenet_vid(tmp_path / "data")
    fake_ytbb(tmp_path / "data")
    exp = load_experiment(toml, for_finetuning=True)
    checks = check_experiment(exp)
    assert [c.error for c in checks] == [None] * len(checks)
    assert [c.images for c in checks] == [1000, 6, 6]
    assert [s.preset for s in exp.shifts] == ["imagenet-vid-robust", "ytbb-robust"]


def test_ytbb_frames_are_right_among_their_anchors_classes(tmp_path):
    from wiseft_explorer.data import load_eval_set
    from wiseft_explorer.experiment import DatasetSpec, class_list

    folder, labels, pmsets, _ = _case("ytbb-robust", tmp_path)
    ev = load_eval_set(DatasetSpec(name="YTBB", source=str(folder.parent), preset="ytbb-robust"),
                       class_list("imagenet"))
    keys = [str(Path(p).relative_to(folder)) for p in ev.paths]
    groups = ytbb_classes()[1]
    # A: bird throughout; B: dog, its frame car (both B's classes); E (cow) cannot be right.
    pred_class = {"vidA_1000/frame-30.jpg": 1, "vidA_1000/frame-29.jpg": 1, "vidA_1000/frame-31.jpg": 1,
                  "vidB_2000/frame-60.jpg": 19, "vidB_2000/frame-61.jpg": 23, "vidE_900/frame-27.jpg": 19}
    for changed, expected in (({}, 2 / 3), ({"vidA_1000/frame-31.jpg": 19}, 1 / 3)):
        classes = pred_class | changed
        pred = np.array([groups[classes[k]][-1] for k in keys])
        assert ev.metric.value(pred, None, np.arange(len(keys))) == pytest.approx(expected)
        assert hand_pm_k(classes, labels, pmsets) == pytest.approx(expected)


def test_a_class_without_imagenet_classes_has_only_its_stand_in_as_right(tmp_path):
    from wiseft_explorer.data import load_eval_set
    from wiseft_explorer.experiment import DatasetSpec, class_list

    folder = fake_ytbb(tmp_path)
    ev = load_eval_set(DatasetSpec(name="YTBB", source=str(folder), preset="ytbb-robust"), class_list("imagenet"))
    assert ev.right_classes(0) == (0,)  # cow's stand-in (the gallery asks for every image's right classes)
    assert ev.right_classes(7) == ytbb_classes()[1][1]  # bird: any of its ImageNet classes
    assert ev.class_names(class_list("imagenet"))[0] == "cow"


def test_ytbb_predictions_are_the_papers_projection_of_imagenet_logits(tmp_path):
    """The paper's YTBBRobustBase.project_logits, written out: 24 columns at 0, each mapped class the max of its
    ImageNet logits, 1e10 off 'none', argmax. Rows whose every logit is negative pick the first unmapped class."""
    import torch

    from wiseft_explorer.data import load_eval_set, set_logits
    from wiseft_explorer.experiment import DatasetSpec, class_list

    ev = load_eval_set(DatasetSpec(name="YTBB", source=str(fake_ytbb(tmp_path)), preset="ytbb-robust"),
                       class_list("imagenet"))
    names, groups = ytbb_classes()
    logits = torch.randn(64, 1000, generator=torch.Generator().manual_seed(0)) * 3
    logits[:16] = -logits[:16].abs() - 0.1  # every logit negative: an unmapped class's 0 wins
    paper = torch.zeros(64, 24, dtype=torch.float64)
    for c, members in enumerate(groups):
        if members:
            paper[:, c] = logits[:, list(members)].double().max(dim=1).values
    paper[:, 22] -= 1e10
    expected = paper.argmax(dim=1)
    class_of = {i: c for c, g in enumerate(groups) for i in g} | {0: 6}  # 0: cow's stand-in
    got = [class_of[int(p)] for p in set_logits(logits, ev).argmax(dim=1)]
    assert got == expected.tolist() and got[:16] == [6] * 16 and len(set(got[16:])) > 5
