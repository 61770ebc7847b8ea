"""Dataset presets: each reads the right classes, labels and subsets from a fake copy of the real layout, scores them
as the paper does (R/A restricted, ObjectNet max-projected and border-cut), and refuses wrong layouts and pickles."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_datasets import (
    cifar_pixels,
    fake_cifar10_bin,
    fake_imagenet_layout,
    fake_objectnet,
    write_class_folders,
)
from libkit import cli_env, copy_example
from PIL import Image
from torchvision import transforms as T

from wiseft_explorer.data import (
    imagenet_wnids,
    load_batch,
    load_eval_set,
    project_logits,
    set_logits,
    subset_wnids,
)
from wiseft_explorer.evaluation import summarise
from wiseft_explorer.experiment import (
    CIFAR10_CLASSES,
    DatasetSpec,
    ExperimentError,
    class_list,
    parse_experiment,
    template_list,
)

REPO = Path(__file__).resolve().parent.parent
IMAGENET = class_list("imagenet")


def _set(key: str, source: Path, **kw) -> DatasetSpec:
    return DatasetSpec(name=key, source=str(source), preset=key, **kw)


def test_imagenet_order_and_subsets_come_from_timm_and_open_clip():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)  # the standard index order is sorted wnids
    assert (wnids[0], IMAGENET[0]) == ("n01440764", "tench") and (wnids[1], IMAGENET[1]) == ("n01443537", "goldfish")
    assert IMAGENET[999] == "toilet paper" and len(IMAGENET) == 1000
    for key in ("imagenet-r", "imagenet-a"):
        assert len(subset_wnids(key)) == 200 and set(subset_wnids(key)) <= set(wnids)
    assert "n01443537" in subset_wnids("imagenet-r") and "n01498041" in subset_wnids("imagenet-a")  # goldfish, stingray
    assert len(template_list("openai")) == 80 and len(template_list("cifar10")) == 18


@pytest.mark.parametrize("key", ["imagenet", "imagenet-sketch", "imagenet-v2"])
def test_full_imagenet_presets_label_every_folder_by_its_class_index(tmp_path, key):
    root = fake_imagenet_layout(tmp_path / key, key)
    ev = load_eval_set(_set(key, root), IMAGENET)
    assert len(ev) == 1000 and ev.class_indices is None and ev.groups is None
    folder_of = {Path(p).parent.name: int(label) for p, label in zip(ev.paths, ev.labels, strict=True)}
    if key == "imagenet-v2":  # folders named by class index
        assert all(folder_of[str(i)] == i for i in range(1000))
    else:
        assert all(folder_of[w] == i for i, w in enumerate(imagenet_wnids()))
        assert folder_of["n01443537"] == 1  # goldfish


@pytest.mark.parametrize("key", ["imagenet-r", "imagenet-a"])
def test_r_and_a_mask_exactly_their_200_classes(tmp_path, key):
    root = fake_imagenet_layout(tmp_path / key, key, per_class=2)
    ev = load_eval_set(_set(key, root), IMAGENET)
    expected = sorted(imagenet_wnids().index(w) for w in subset_wnids(key))
    assert ev.class_indices.tolist() == expected and len(ev) == 400
    assert set(ev.labels.tolist()) == set(expected)
    logits = torch.randn(64, 1000) * 5
    scored = set_logits(logits, ev)
    outside = torch.ones(1000, dtype=torch.bool)
    outside[expected] = False
    assert torch.isinf(scored[:, outside]).all() and torch.equal(scored[:, expected], logits[:, expected])
    assert set(scored.argmax(-1).tolist()) <= set(expected)


def test_imagenet_layout_errors_name_the_problem_and_the_layout(tmp_path):
    root = fake_imagenet_layout(tmp_path / "val", "imagenet")
    (root / "n01443537" / "0.JPEG").unlink()
    (root / "n01443537").rmdir()
    with pytest.raises(ExperimentError, match=r"1 of the 1000 class folders are missing, e.g. 'n01443537'.*"
                                              r"Expected layout: val/<wnid>"):
        load_eval_set(_set("imagenet", root), IMAGENET)
    parent = tmp_path / "ILSVRC"
    write_class_folders(parent, ["train", "val"])
    with pytest.raises(ExperimentError, match="one level too high"):
        load_eval_set(_set("imagenet", parent), IMAGENET)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
    with pytest.raises(ExperimentError, match="no class folders .found 1 files") as info:
        load_eval_set(_set("imagenet", flat), IMAGENET)
    assert "ILSVRC2012_validation_ground_truth.txt" in str(info.value) and "ImageNet('DIR', split='val')" in str(
        info.value) and "\n" not in str(info.value)
    r_root = fake_imagenet_layout(tmp_path / "r", "imagenet-r")
    write_class_folders(r_root, ["n01440764"])  # tench is not an ImageNet-R class
    with pytest.raises(ExperimentError, match="'n01440764' are not ImageNet-R class folders"):
        load_eval_set(_set("imagenet-r", r_root), IMAGENET)
    with pytest.raises(ExperimentError, match="ImageNet's 1,000 class indices, but the experiment has 3"):
        load_eval_set(_set("imagenet-r", r_root), ["a", "b", "c"])


def test_objectnet_groups_labels_and_the_max_projection(tmp_path):
    base = fake_objectnet(tmp_path)
    ev = load_eval_set(_set("objectnet", base), IMAGENET)
    # Folders sorted: alarm_clock, banana, chair; the unmapped folder is not part of the set.
    assert ev.groups == ((409, 530), (954,), (423, 559, 765)) and ev.class_indices.tolist() == [409, 954, 423]
    assert len(ev) == 6 and sorted(ev.labels.tolist()) == [409, 409, 423, 423, 954, 954]
    assert not any("air_freshener" in p for p in ev.paths) and ev.border == 0  # the paper's code cuts nothing
    shown = ev.class_names(IMAGENET)
    assert (shown[409], shown[954], shown[423]) == ("Alarm clock", "Banana", "Chair")
    assert shown[530] == IMAGENET[530]  # the gallery names the set's labels the set's way
    # Hand computation: image 0's best mapped class is chair's 765, image 1's alarm clock's 530, image 2's banana.
    logits = torch.zeros(3, 1000)
    logits[0, [409, 530, 954, 423, 559, 765, 7]] = torch.tensor([1.0, 2.0, 3.5, 0.5, 0.1, 4.0, 9.0])
    logits[1, [409, 530, 954, 765]] = torch.tensor([-1.0, 5.0, 4.9, 4.8])
    logits[2, [530, 954, 765]] = torch.tensor([-3.0, -0.5, -2.0])
    logits[2, 409] = -9.0
    logits[2, [423, 559]] = -1.0
    projected = project_logits(logits, ev.groups, ev.class_indices)
    hand = torch.tensor([[2.0, 3.5, 4.0], [5.0, 4.9, 4.8], [-3.0, -0.5, -1.0]])  # max over each group
    assert torch.equal(projected[:, [409, 954, 423]], hand) and torch.equal(set_logits(logits, ev), projected)
    assert torch.isinf(projected).sum() == 3 * 997  # e.g. class 7 belongs to no ObjectNet class: its 9.0 is ignored
    preds = summarise(logits, torch.tensor([423, 423, 954]), ev.class_indices, groups=ev.groups)
    assert preds.pred.tolist() == [423, 409, 954] and preds.correct.tolist() == [True, False, True]


def test_objectnet_keeps_its_frame_as_the_paper_does_and_cuts_it_on_request(tmp_path):
    base = fake_objectnet(tmp_path)
    # The paper's code: ObjectNetBase composes its crop into self.preprocess only after ImageNet.__init__ has built
    # the test set with the plain transform, so its ObjectNet images keep their frame. Written out: the file as
    # torchvision's pil_loader gives it, whole.
    plain = load_eval_set(_set("objectnet", base), IMAGENET)
    images, loaded, failed = load_batch(plain, [0, 1], T.ToTensor())
    assert images.shape == (2, 3, 12, 12) and not failed
    for row, index in enumerate(loaded):
        with open(plain.paths[index], "rb") as fh:
            whole = np.array(Image.open(fh).convert("RGB"))
        assert (whole[0] == (255, 0, 0)).all() and torch.equal(images[row], T.ToTensor()(whole))
    # crop_border = true: ObjectNet's advice, 2 pixels off every side (the paper's unused `crop`).
    ev = load_eval_set(_set("objectnet", base, crop_border=True), IMAGENET)
    images, loaded, failed = load_batch(ev, [0, 1], T.ToTensor())
    assert images.shape == (2, 3, 8, 8) and not failed  # 12 x 12 minus 2 pixels on every side
    for row, index in enumerate(loaded):
        original = np.asarray(Image.open(ev.paths[index]).convert("RGB"))
        assert (original[0] == (255, 0, 0)).all()  # the frame is there in the file ...
        assert torch.equal(images[row], T.ToTensor()(original[2:-2, 2:-2].copy()))  # ... and cut before the model
    assert np.array_equal(np.asarray(ev.picture(0)), np.asarray(Image.open(ev.paths[0]).convert("RGB"))[2:-2, 2:-2])


def test_objectnet_without_mappings_or_folders_is_refused(tmp_path):
    base = fake_objectnet(tmp_path)
    images_only = tmp_path / "copy"
    (base / "images").rename(images_only)
    with pytest.raises(ExperimentError, match="no mappings/ folder next to images/.*Expected layout: objectnet-1.0/"):
        load_eval_set(_set("objectnet", images_only), IMAGENET)
    images_only.rename(base / "images")
    for f in (base / "images" / "banana").iterdir():
        f.unlink()
    (base / "images" / "banana").rmdir()
    with pytest.raises(ExperimentError, match="1 of the 3 ImageNet-overlapping class folders are missing.*'banana'"):
        load_eval_set(_set("objectnet", base), IMAGENET)
    (base / "mappings" / "objectnet_to_imagenet_1k.json").write_text('{"Banana": "no such class"}')
    with pytest.raises(ExperimentError, match="do not fit together"):
        load_eval_set(_set("objectnet", base), IMAGENET)


def test_cifar10_binary_release_decodes_to_the_right_labels_and_pixels(tmp_path):
    images, labels = cifar_pixels(7)
    fake_cifar10_bin(tmp_path, images, labels)
    ev = load_eval_set(_set("cifar10", tmp_path), CIFAR10_CLASSES)
    order = np.argsort(ev.order)  # (no limit: the set keeps file order)
    assert ev.labels.tolist() == labels.tolist() and np.array_equal(ev.raw, images) and len(order) == 7
    # Classes are matched by name, so an experiment may list them in another order.
    shuffled = list(reversed(CIFAR10_CLASSES))
    ev2 = load_eval_set(_set("cifar10", tmp_path / "cifar-10-batches-bin"), shuffled)
    assert [shuffled[i] for i in ev2.labels] == [CIFAR10_CLASSES[i] for i in labels]
    py = tmp_path / "cifar-10-batches-py"
    py.mkdir()
    (py / "test_batch").write_bytes(pickle.dumps({"data": 1}))
    with pytest.raises(ExperimentError, match="Python release, whose files are pickles.*binary release"):
        load_eval_set(_set("cifar10", py), CIFAR10_CLASSES)
    with pytest.raises(ExperimentError, match="needs the class 'airplane'"):
        load_eval_set(_set("cifar10", tmp_path), ["cat", "dog"])


def test_cifar101_npy_and_converted_cifar102_decode_and_pickles_are_refused(tmp_path):
    images, labels = cifar_pixels(5, seed=3)
    np.save(tmp_path / "cifar10.1_v6_data.npy", images)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", labels)
    ev = load_eval_set(_set("cifar10.1", tmp_path), CIFAR10_CLASSES)
    assert ev.labels.tolist() == labels.tolist() and np.array_equal(ev.raw, images)
    np.save(tmp_path / "cifar10.1_v6_labels.npy", np.array([{"evil": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(ExperimentError, match="holds pickled objects"):
        load_eval_set(_set("cifar10.1", tmp_path), CIFAR10_CLASSES)

    c102 = tmp_path / "cifar102"
    c102.mkdir()
    pickled = c102 / "cifar102_test.npy"
    np.save(pickled, np.array({"images": images, "labels": labels}, dtype=object), allow_pickle=True)
    with pytest.raises(ExperimentError, match=r"pickled dict.*convert --trust-pickle .*cifar102_test.npy"):
        load_eval_set(_set("cifar10.2", c102), CIFAR10_CLASSES)
    refused = subprocess.run([sys.executable, "-m", "wiseft_explorer", "convert", str(pickled),
                              str(c102 / "cifar102_test.npz")], capture_output=True, text=True, cwd=REPO,
                             env=cli_env(), timeout=120)
    assert refused.returncode != 0 and "--trust-pickle" in refused.stderr
    assert not (c102 / "cifar102_test.npz").exists()
    done = subprocess.run([sys.executable, "-m", "wiseft_explorer", "convert", "--trust-pickle", str(pickled),
                           str(c102 / "cifar102_test.npz")], capture_output=True, text=True, cwd=REPO,
                          env=cli_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    ev = load_eval_set(_set("cifar10.2", c102), CIFAR10_CLASSES)
    assert ev.labels.tolist() == labels.tolist() and np.array_equal(ev.raw, images)


def test_experiment_presets_default_the_classes_and_check_keys(tmp_path):
    root = fake_imagenet_layout(tmp_path / "r", "imagenet-r")
    table = {"zeroshot": {"model": "ViT-B-32"}, "id": {"preset": "imagenet-r", "source": str(root), "limit": 10}}
    exp = parse_experiment(table, tmp_path)
    assert exp.classnames == IMAGENET and exp.templates == template_list("openai")
    assert exp.id_set.name == "ImageNet-R" and exp.id_set.preset == "imagenet-r" and exp.id_set.limit == 10
    cifar = parse_experiment({"zeroshot": {"model": "ViT-B-32"}, "id": {"preset": "cifar10", "source": str(tmp_path)},
                              "classes": {"names": "cifar10", "templates": "cifar10"}}, tmp_path)
    assert cifar.classnames == CIFAR10_CLASSES and len(cifar.templates) == 18
    bad = [({"preset": "imagenet-x", "source": str(root)}, "unknown preset 'imagenet-x'"),
           ({"preset": "imagenet-r", "source": str(root), "classes": ["goldfish"]}, "remove 'classes'"),
           ({"preset": "imagenet-r", "source": "world:sketch"}, "reads the dataset's folder")]
    for id_table, message in bad:
        with pytest.raises(ExperimentError, match=message):
            parse_experiment({"zeroshot": {"model": "m"}, "id": id_table}, tmp_path)
    with pytest.raises(ExperimentError, match=r"missing table \[classes\]"):
        parse_experiment({"zeroshot": {"model": "m"}, "id": {"source": str(root)}}, tmp_path)


def _preset_experiment(tmp_path: Path, tiny, classes: str, sets: str) -> Path:
    """A tiny CLIP experiment over a named class list, with a fine-tuned head for those classes, and preset sets."""
    from tiny import TINY_NAME, fake_finetune

    from wiseft_explorer.core import build_zeroshot, classifier_metadata, load_clip, save_checkpoint
    from wiseft_explorer.experiment import ModelSpec

    names, templates = class_list(classes), ["a photo of a {}."]
    clip = load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))
    ft = fake_finetune(build_zeroshot(clip, names, templates), seed=1)
    if classes == "imagenet":  # members of ObjectNet groups that are not their label: only a max-projection sees them
        with torch.no_grad():
            ft.head.bias[765] += 100.0
    ft_path = save_checkpoint(tmp_path / "ft.safetensors", ft.state_dict(),
                              classifier_metadata(clip, names, recipe={"kind": "test-perturbation"}, seed=1))
    toml = tmp_path / "preset.toml"
    toml.write_text(f"""device = "cpu"
batch_size = 4
cache_dir = "{tmp_path / 'cache'}"
[zeroshot]
model = "{TINY_NAME}"
pretrained = "{tiny.zeroshot}"
config = "{tiny.config}"
[finetuned]
checkpoint = "{ft_path}"
[classes]
names = "{classes}"
templates = {templates!r}
{sets}""".replace("'", '"'))
    return toml


@pytest.mark.parametrize("family", ["cifar10", "imagenet"])
def test_preset_sets_stream_to_the_in_memory_reference(tiny, tmp_path, family):
    """The engine scores preset sets as summarise() does on the whole set: R masked, ObjectNet max-projected."""
    from libkit import in_memory_predictions

    from wiseft_explorer.evaluation import ExperimentRuntime, run_sweep

    if family == "cifar10":
        images, labels = cifar_pixels(9, seed=4)
        fake_cifar10_bin(tmp_path / "c10", images, labels)
        np.save(tmp_path / "cifar10.1_v6_data.npy", images[:6])
        np.save(tmp_path / "cifar10.1_v6_labels.npy", labels[:6])
        sets = (f'[id]\npreset = "cifar10"\nsource = "{tmp_path / "c10"}"\n'
                f'[[shifts]]\npreset = "cifar10.1"\nsource = "{tmp_path}"\n')
    else:
        r_root = fake_imagenet_layout(tmp_path / "r", "imagenet-r")
        sets = (f'[id]\npreset = "imagenet-r"\nsource = "{r_root}"\nlimit = 12\n'
                f'[[shifts]]\npreset = "objectnet"\nsource = "{fake_objectnet(tmp_path)}"\n')
    runtime = ExperimentRuntime.from_path(_preset_experiment(tmp_path, tiny, family, sets))
    alphas = [0.0, 0.5, 1.0]
    result = run_sweep(runtime, alphas)
    for (name, alpha), expected in in_memory_predictions(runtime, alphas).items():
        ev, got = runtime.eval_set(name), result.predictions[name][alpha]
        assert torch.equal(got.pred.long(), expected.pred) and got.top1 == expected.top1, (name, alpha)
        if ev.class_indices is not None:
            assert set(got.pred.tolist()) <= set(ev.class_indices.tolist())
    assert set(result.counts) == set(runtime.set_names)


def test_a_preset_experiment_survives_the_models_page_form_and_toml(tmp_path):
    import tomllib

    from wiseft_explorer.experiment import experiment_table, experiment_to_toml, form_of

    root = fake_imagenet_layout(tmp_path / "a", "imagenet-a")
    exp = parse_experiment({"zeroshot": {"model": "ViT-B-32", "pretrained": "openai"},
                            "id": {"preset": "imagenet-a", "source": str(root), "limit": 50}}, tmp_path)
    form = form_of(exp)
    assert (form["classes"], form["templates"], form["id_preset"]) == ("imagenet", "openai", "imagenet-a")
    assert parse_experiment(experiment_table(form), tmp_path).id_set == exp.id_set
    assert parse_experiment(tomllib.loads(experiment_to_toml(exp)), tmp_path) == exp


def test_finetune_reads_cifar10_training_batches_through_its_preset(tiny, tmp_path):
    from tiny import TINY_NAME

    images, labels = cifar_pixels(20, seed=6)
    for i in range(5):  # data_batch_1 ... 5, four images each
        fake_cifar10_bin(tmp_path, images[4 * i:4 * i + 4], labels[4 * i:4 * i + 4], f"data_batch_{i + 1}.bin")
    ev = load_eval_set(_set("cifar10-train", tmp_path), CIFAR10_CLASSES)
    assert ev.labels.tolist() == labels.tolist() and np.array_equal(ev.raw, images)
    toml = tmp_path / "c10.toml"
    toml.write_text(f'device = "cpu"\n[zeroshot]\nmodel = "{TINY_NAME}"\npretrained = "{tiny.zeroshot}"\n'
                    f'config = "{tiny.config}"\n[classes]\nnames = "cifar10"\ntemplates = ["a photo of a {{}}."]\n'
                    f'[id]\npreset = "cifar10-train"\nsource = "{tmp_path}"\n')
    out = tmp_path / "ft.safetensors"
    run = subprocess.run([sys.executable, "-m", "wiseft_explorer", "finetune", "--experiment", str(toml), "--train",
                          str(tmp_path / "cifar-10-batches-bin"), "--train-preset", "cifar10-train", "--mode", "linear",
                          "--epochs", "1", "--batch-size", "8", "--warmup", "0", "--workers", "0", "--out", str(out)],
                         capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=300)
    assert run.returncode == 0, run.stderr
    assert "20 images" in run.stdout and out.is_file()


@pytest.mark.parametrize("example", ["imagenet-vit-b32", "cifar10-vit-b32"])
def test_the_example_experiments_read_fake_copies_of_the_real_datasets(tmp_path, example):

    from wiseft_explorer.data import check_experiment
    from wiseft_explorer.experiment import load_experiment

    # The project layout the example's comments describe: experiments/, checkpoints/ and data/ side by side.
    toml = copy_example(tmp_path, example, ("vit_b32_openai.safetensors", "zeroshot.safetensors"))
    data = tmp_path / "data"
    if example.startswith("imagenet"):
        for key, folder in [("imagenet", "imagenet/val"), ("imagenet-v2", "imagenetv2-matched-frequency-format-val"),
                            ("imagenet-r", "imagenet-r"), ("imagenet-sketch", "sketch"), ("imagenet-a", "imagenet-a")]:
            fake_imagenet_layout(data / folder, key)
        fake_objectnet(data)
    else:
        images, labels = cifar_pixels(10)
        fake_cifar10_bin(data, images, labels)
        (data / "CIFAR-10.1" / "datasets").mkdir(parents=True)
        np.save(data / "CIFAR-10.1" / "datasets" / "cifar10.1_v6_data.npy", images)
        np.save(data / "CIFAR-10.1" / "datasets" / "cifar10.1_v6_labels.npy", labels)
        (data / "cifar10.2").mkdir()
        np.savez(data / "cifar10.2" / "cifar102_test.npz", images=images, labels=labels)
    exp = load_experiment(toml, for_finetuning=True)
    checks = check_experiment(exp)
    assert [c.error for c in checks] == [None] * len(checks)
    names = [s.name for s in exp.eval_sets]
    if example.startswith("imagenet"):
        assert names == ["ImageNet", "ImageNet-V2", "ImageNet-R", "ImageNet-Sketch", "ObjectNet", "ImageNet-A"]
        assert [c.images for c in checks] == [1000, 1000, 200, 1000, 6, 200]
    else:
        # The paper's code has no CIFAR prompts: its openai_imagenet_template (issue #24, item 10).
        assert names == ["CIFAR-10", "CIFAR-10.1", "CIFAR-10.2"] and exp.templates == template_list("openai")


def test_an_objectnet_example_is_right_for_any_imagenet_class_of_its_group(tiny, tmp_path):
    from wiseft_explorer.evaluation import ExperimentRuntime, set_example

    sets = f'[id]\npreset = "objectnet"\nsource = "{fake_objectnet(tmp_path)}"\n'
    runtime = ExperimentRuntime.from_path(_preset_experiment(tmp_path, tiny, "imagenet", sets))
    ev = runtime.eval_set("ObjectNet")
    index = next(i for i in range(len(ev)) if int(ev.labels[i]) == 409)  # an alarm clock
    example = set_example(runtime, "ObjectNet", index)
    assert example.truth == "Alarm clock" and example.right == (IMAGENET[409], IMAGENET[530])
    assert ev.right_classes(954) == (954,) and ev.right_classes(423) == (423, 559, 765)  # banana's group, chair's
