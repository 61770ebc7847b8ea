"""Experiment TOML files: every key and type, built-in class/template sets, and one clear error per mistake."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from open_clip.zero_shot_metadata import (
    IMAGENET_CLASSNAMES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_IMAGENET_TEMPLATES,
)

from wiseft_explorer.experiment import (
    BUILTIN_EXPERIMENTS,
    DEFAULT_EXPERIMENT,
    ExperimentError,
    builtin_templates,
    experiment_to_toml,
    form_experiment,
    form_of,
    load_experiment,
    load_mapping,
)


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    """A folder with everything a complete experiment refers to (relative paths)."""
    for name in ("zs.safetensors", "ft.safetensors", "tiny-model.json"):
        (tmp_path / name).write_bytes(b"x")
    for folder in ("id/cat", "val/cat", "sketch/cat", "sketch/dog"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "classes.txt").write_text("cat\n\n dog \nbird\n")
    (tmp_path / "map.json").write_text(json.dumps({"cat": "cat", "dog": "dog"}))
    return tmp_path


FULL = """
name = "full"
device = "cuda:1"
precision = "bf16"
head_policy = "zeroshot"
batch_size = 32
cache_dir = "my-cache"

[zeroshot]
model = "tiny-model"
pretrained = "zs.safetensors"
config = "tiny-model.json"

[finetuned]
checkpoint = "ft.safetensors"

[classes]
file = "classes.txt"
templates = ["a {}.", "the {}!"]

[id]
name = "In"
source = "id"
limit = 7

[id_val]
source = "val"

[[shifts]]
name = "Sketch"
source = "sketch"
classes = ["cat", "dog"]
mapping = "map.json"

[[shifts]]
name = "World"
source = "world:sketch"
"""


def write(folder: Path, text: str, name: str = "exp.toml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def error_of(folder: Path, text: str) -> str:
    """The message of the ExperimentError a TOML text raises (it must be one line)."""
    with pytest.raises(ExperimentError) as info:
        load_experiment(write(folder, text))
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_every_key_is_parsed_with_its_type(files):
    exp = load_experiment(write(files, FULL))
    assert (exp.name, exp.device, exp.precision, exp.head_policy, exp.batch_size) == (
        "full", "cuda:1", "bf16", "zeroshot", 32)
    assert exp.cache_dir == (files / "my-cache").resolve()
    assert exp.zeroshot.name == "tiny-model"
    assert exp.zeroshot.pretrained == str((files / "zs.safetensors").resolve())
    assert exp.zeroshot.config == (files / "tiny-model.json").resolve()
    assert exp.finetuned == (files / "ft.safetensors").resolve()
    assert exp.classnames == ("cat", "dog", "bird")  # blank lines dropped, whitespace stripped
    assert exp.templates == ("a {}.", "the {}!")
    assert (exp.id_set.name, exp.id_set.source, exp.id_set.limit) == ("In", str((files / "id").resolve()), 7)
    assert exp.id_val.name == "ID-val" and exp.id_val.source == str((files / "val").resolve())
    sketch, world = exp.shifts
    assert sketch.classes == ("cat", "dog") and sketch.mapping == (files / "map.json").resolve()
    assert world.source == "world:sketch" and world.is_world and not sketch.is_world
    assert [s.name for s in exp.eval_sets] == ["In", "ID-val", "Sketch", "World"]
    assert load_mapping(sketch.mapping) == {"cat": "cat", "dog": "dog"}
    assert exp.path == files / "exp.toml"


def test_defaults_and_round_trip_through_toml(files, tmp_path_factory):
    minimal = FULL.split("[id_val]")[0].replace('head_policy = "zeroshot"\n', "").replace('precision = "bf16"\n', "")
    exp = load_experiment(write(files, minimal))
    assert exp.head_policy == "auto" and exp.precision == "fp32" and exp.shifts == () and exp.id_val is None
    full = load_experiment(write(files, FULL))
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # absolute paths: the text works from any folder
    again = load_experiment(write(elsewhere, experiment_to_toml(full)))
    assert again == full


def test_settings_the_models_form_does_not_show_survive_opening_and_saving(files, tmp_path_factory):
    (files / "objectnet" / "images").mkdir(parents=True)
    text = FULL.replace('cache_dir = "my-cache"\n', 'cache_dir = "my-cache"\nseed = 3\nworkers = 2\n'
                        'allow_other_zeroshot = true\n').replace(
        'config = "tiny-model.json"\n', 'config = "tiny-model.json"\n\n[zeroshot.preprocess]\ntag = "openai"\n'
        'model = "ViT-B-32"\nmean = [0.5, 0.5, 0.5]\ninterpolation = "bilinear"\n') + (
        '\n[[shifts]]\nsource = "objectnet/images"\npreset = "objectnet"\ncrop_border = true\n'
        'skip_unreadable = true\n')
    full = load_experiment(write(files, text))
    assert full.allow_other_zeroshot and full.zeroshot.preprocess is not None and full.shifts[-1].crop_border
    # The Models page opens the file into its fields, then saves what the fields say: nothing may be lost.
    reopened = form_experiment(form_of(full), files)
    assert reopened == dataclasses.replace(full, path=None)
    saved = load_experiment(write(tmp_path_factory.mktemp("saved"), experiment_to_toml(reopened)))
    assert saved == full


def test_builtin_class_names_and_templates(files):
    text = FULL.replace('file = "classes.txt"', 'names = "imagenet"').replace(
        'templates = ["a {}.", "the {}!"]', 'templates = "openai"').split("[id_val]")[0].replace(
        'classes = ["cat", "dog"]', "")
    exp = load_experiment(write(files, text))
    assert exp.classnames == tuple(IMAGENET_CLASSNAMES) and len(exp.classnames) == 1000
    assert len(exp.templates) == 80 and len(OPENAI_IMAGENET_TEMPLATES) == 80
    assert exp.templates[0].format("dog") == OPENAI_IMAGENET_TEMPLATES[0]("dog")
    assert all("{}" in t for t in exp.templates)
    simple = load_experiment(write(files, text.replace('templates = "openai"', 'templates = "simple"')))
    assert simple.templates == builtin_templates("simple")
    assert [t.format("x") for t in simple.templates] == [t("x") for t in SIMPLE_IMAGENET_TEMPLATES]
    default = load_experiment(write(files, text.replace('templates = "openai"', "")))
    assert default.templates == builtin_templates("openai")  # the paper's 80 prompts unless told otherwise


def test_pretrained_tags_and_hub_ids_stay_as_written(files):
    for value in ("openai", "laion2b_s34b_b79k", "hf-hub:org/repo"):
        exp = load_experiment(write(files, FULL.replace('pretrained = "zs.safetensors"', f'pretrained = "{value}"')))
        assert exp.zeroshot.pretrained == value
    exp = load_experiment(write(files, FULL.replace('pretrained = "zs.safetensors"', 'pretrained = "local-dir:id"')))
    assert exp.zeroshot.pretrained == "local-dir:" + str((files / "id").resolve())


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('name = "full"', 'name = "full"\ncolour = "red"', "experiment: unknown key 'colour'"),
    ('config = "tiny-model.json"', 'config = "tiny-model.json"\nweights = "x"', "zeroshot: unknown key 'weights'"),
    ('checkpoint = "ft.safetensors"', 'checkpoint = "ft.safetensors"\nalpha = 0.5', "finetuned: unknown key 'alpha'"),
    ('limit = 7', 'limit = 7\nshuffle = true', "id: unknown key 'shuffle'"),
    ('name = "Sketch"', 'name = "Sketch"\nsubset = []', "shifts[0]: unknown key 'subset'"),
    ('templates = ["a {}.", "the {}!"]', 'templates = ["a {}."]\nprompts = []', "classes: unknown key 'prompts'"),
])
def test_unknown_keys_are_named(files, old, new, expected):
    assert expected in error_of(files, FULL.replace(old, new, 1))


@pytest.mark.parametrize(("old", "new", "expected"), [
    ('batch_size = 32', 'batch_size = "32"', "experiment.batch_size: expected int, got str"),
    ('batch_size = 32', 'batch_size = true', "experiment.batch_size: expected int, got bool"),
    ('batch_size = 32', 'batch_size = 0', "experiment.batch_size: expected a positive int"),
    ('device = "cuda:1"', 'device = 1', "experiment.device: expected str, got int"),
    ('head_policy = "zeroshot"', 'head_policy = "average"', "experiment.head_policy: expected one of"),
    ('precision = "bf16"', 'precision = "fp8"', "experiment.precision: expected one of"),
    ('precision = "bf16"', 'precision = 16', "experiment.precision: expected str, got int"),
    ('cache_dir = "my-cache"', 'cache_dir = ["a"]', "experiment.cache_dir: expected str, got list"),
    ('model = "tiny-model"', 'model = 3', "zeroshot.model: expected str, got int"),
    ('pretrained = "zs.safetensors"', 'pretrained = true', "zeroshot.pretrained: expected str, got bool"),
    ('checkpoint = "ft.safetensors"', 'checkpoint = ["ft.safetensors"]', "finetuned.checkpoint: expected str"),
    ('file = "classes.txt"', 'names = 3', "classes.names: expected list or str, got int"),
    ('file = "classes.txt"', 'names = "cifar"', "classes.names: expected a list or one of ('imagenet', 'cifar10', 'iwildcam', 'fmow', "
     "'cifar100', 'stanford-cars', 'dtd', 'sun397', 'food101')"),
    ('file = "classes.txt"', 'names = ["cat", "cat"]', "class 'cat' appears twice"),
    ('file = "classes.txt"', 'names = []', "classes.names: expected a non-empty list"),
    ('file = "classes.txt"', 'file = "classes.txt"\nnames = ["a"]', "give exactly one of 'names'"),
    ('templates = ["a {}.", "the {}!"]', 'templates = "fancy"', "classes.templates: expected a list or one of"),
    ('templates = ["a {}.", "the {}!"]', 'templates = ["no placeholder"]', "must be a string containing '{}'"),
    ('limit = 7', 'limit = "7"', "id.limit: expected int, got str"),
    ('name = "In"', 'name = 1', "id.name: expected str, got int"),
    ('classes = ["cat", "dog"]', 'classes = "cat"', "shifts[0].classes: expected list, got str"),
    ('classes = ["cat", "dog"]', 'classes = ["cat", "zebra"]', "shifts[0].classes: 'zebra' is not one of"),
    ('name = "World"', 'name = "Sketch"', "two sets share the name 'Sketch'"),
])
def test_wrong_types_name_the_key_and_expected_type(files, old, new, expected):
    text = FULL.replace(old, new, 1)
    assert text != FULL
    assert expected in error_of(files, text)


def test_shift_tables_must_be_tables(files):
    base = FULL.split("[[shifts]]")[0]
    as_strings = base.replace('cache_dir = "my-cache"', 'cache_dir = "my-cache"\nshifts = ["sketch"]')
    assert "shifts[0]: expected a table with 'source', got str" in error_of(files, as_strings)
    as_int = base.replace('cache_dir = "my-cache"', 'cache_dir = "my-cache"\nshifts = 3')
    assert "experiment.shifts: expected list, got int" in error_of(files, as_int)


@pytest.mark.parametrize(("old", "new", "key", "missing"), [
    ('pretrained = "zs.safetensors"', 'pretrained = "gone/zs.safetensors"', "zeroshot.pretrained", "zs.safetensors"),
    ('pretrained = "zs.safetensors"', 'pretrained = "local-dir:nowhere"', "zeroshot.pretrained", "nowhere"),
    ('config = "tiny-model.json"', 'config = "other.json"', "zeroshot.config", "other.json"),
    ('checkpoint = "ft.safetensors"', 'checkpoint = "ft.pt"', "finetuned.checkpoint", "ft.pt"),
    ('file = "classes.txt"', 'file = "names.txt"', "classes.file", "names.txt"),
    ('source = "id"', 'source = "no-such-folder"', "id.source", "no-such-folder"),
    ('mapping = "map.json"', 'mapping = "m.json"', "shifts[0].mapping", "m.json"),
])
def test_missing_files_are_named(files, old, new, key, missing):
    message = error_of(files, FULL.replace(old, new, 1))
    assert message.startswith(key) and "file not found" in message and missing in message


def test_missing_sections_and_values(files):
    no_id = FULL.replace('[id]\nname = "In"\nsource = "id"\nlimit = 7\n', "")
    assert "experiment: missing table [id]" in error_of(files, no_id)
    assert "id.source: missing" in error_of(files, FULL.replace('source = "id"', 'source = ""'))
    assert "zeroshot.model: missing" in error_of(files, FULL.replace('model = "tiny-model"\n', ""))
    assert "finetuned: expected a table" in error_of(
        files, FULL.replace('[finetuned]\ncheckpoint = "ft.safetensors"\n', "").replace(
            'cache_dir = "my-cache"', 'cache_dir = "my-cache"\nfinetuned = "ft.safetensors"'))
    # Before fine-tuning there is no checkpoint yet: the section may be absent.
    assert load_experiment(write(files, FULL.replace('[finetuned]\ncheckpoint = "ft.safetensors"\n', ""))).finetuned is None


def test_bad_toml_and_missing_file_name_the_file(files):
    message = error_of(files, FULL.replace('batch_size = 32', 'batch_size = = 32'))
    assert message.startswith("exp.toml: not valid TOML") and "line" in message
    with pytest.raises(ExperimentError, match="experiment file not found: .*nope.toml"):
        load_experiment(files / "nope.toml")
    bad_map = files / "bad-map.json"
    bad_map.write_text("[1, 2]")
    with pytest.raises(ExperimentError, match="bad-map.json: mapping must be a JSON object"):
        load_mapping(bad_map)


def test_default_experiment_is_the_demo():
    assert DEFAULT_EXPERIMENT.name == "demo.toml" and DEFAULT_EXPERIMENT.parent.name == "experiments"
    if DEFAULT_EXPERIMENT.exists():  # the demo assets land separately; once there, the default must load
        exp = load_experiment(None)
        assert exp.path == DEFAULT_EXPERIMENT and exp.id_set.source.startswith("world:")


def test_the_larger_sample_demo_is_the_demo_with_bigger_sets():
    # demo.toml is written by build-demo; the hand-written larger-sample twin must not drift from it.
    folder = BUILTIN_EXPERIMENTS
    demo, precise = load_experiment(folder / "demo.toml"), load_experiment(folder / "demo-precise.toml")
    for field in ("zeroshot", "finetuned", "classnames", "templates", "head_policy", "precision"):
        assert getattr(precise, field) == getattr(demo, field), field
    assert [s.source for s in precise.shifts] == [s.source for s in demo.shifts]
    assert (precise.id_set.limit, precise.id_val.limit) == (3000, 3000)
    assert {s.limit for s in precise.shifts} == {2000}


def test_several_fine_tuned_endpoints_by_name_and_the_single_table_unchanged(tmp_path):
    from wiseft_explorer.experiment import parse_experiment

    for name in ("e2e.safetensors", "lin.safetensors"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "id").mkdir()
    base = {"zeroshot": {"model": "m"}, "classes": {"names": ["a", "b"]}, "id": {"source": "id"}}
    single = parse_experiment({**base, "finetuned": {"checkpoint": "e2e.safetensors"}}, tmp_path)
    assert single.endpoint_names == ["fine-tuned"] and single.finetuned == tmp_path / "e2e.safetensors"
    assert single.with_endpoint(None) is single
    both = parse_experiment({**base, "finetuned": [{"name": "end-to-end", "checkpoint": "e2e.safetensors"},
                                                   {"name": "linear classifier", "checkpoint": "lin.safetensors"}]},
                            tmp_path)
    assert both.endpoint_names == ["end-to-end", "linear classifier"] and both.endpoint == "end-to-end"
    linear = both.with_endpoint("linear classifier")
    assert linear.finetuned == tmp_path / "lin.safetensors" and linear.endpoint == "linear classifier"
    assert linear.with_endpoint("end-to-end") == both
    with pytest.raises(ExperimentError, match="no fine-tuned endpoint named 'x'.*end-to-end, linear classifier"):
        both.with_endpoint("x")
    for tables, message in [([{"checkpoint": "e2e.safetensors"}, {"name": "b", "checkpoint": "lin.safetensors"}],
                             r"finetuned\[0\].name: missing"),
                            ([{"name": "a", "checkpoint": "e2e.safetensors"}, {"name": "a", "checkpoint": "lin.safetensors"}],
                             "two endpoints share the name 'a'"),
                            ([{"name": "a"}], r"finetuned\[0\].checkpoint: missing")]:
        with pytest.raises(ExperimentError, match=message):
            parse_experiment({**base, "finetuned": tables}, tmp_path)
