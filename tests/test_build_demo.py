"""build-demo end to end in its tiny configuration, loaded back through the code the app uses."""

from __future__ import annotations

import json

import pytest
import torch

from wiseft_explorer.core import WeightSpace, load_checkpoint, load_models
from wiseft_explorer.data import load_batch, load_eval_set
from wiseft_explorer.demo import DEMO_MODEL_CONFIG, DemoConfig, build_demo, vocabulary_token_ids
from wiseft_explorer.experiment import load_experiment
from wiseft_explorer.world import CLASSES, SHIFT_NAMES


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One tiny build into a temporary folder (assets/ and experiments/ side by side, like the repository)."""
    root = tmp_path_factory.mktemp("demo")
    result = build_demo(root / "assets" / "demo", DemoConfig.tiny(), experiments_dir=root / "experiments",
                        progress=False)
    return root, result


def test_writes_every_asset_and_both_experiments(built):
    root, result = built
    assert set(result.assets) == {"config", "zeroshot", "end-to-end", "linear", "lp-ft", "flyp", "family",
                                  *(f"ingredient-{k}" for k in (1, 2, 3))}
    assert all(p.is_file() for p in result.assets.values())
    assert json.loads(result.assets["config"].read_text()) == DEMO_MODEL_CONFIG
    assert {p.name for p in result.experiments.values()} == {"demo.toml", "demo-linear.toml", "demo-soups.toml"}
    assert result.timings["total"] > 0 and "pretrain" in result.timings


def test_checkpoints_record_seed_config_and_recipe(built):
    _, result = built
    tensors, meta = load_checkpoint(result.assets["zeroshot"])
    assert meta["seed"] == 0 and meta["model_config"] == DEMO_MODEL_CONFIG and meta["recipe"]["steps"] == 4
    assert all(t.dtype == torch.float16 for t in tensors.values() if t.is_floating_point())
    # Only token rows of the world's vocabulary are non-zero, so the embedding is stored compactly.
    rows = (tensors["token_embedding.weight"] != 0).any(dim=1).nonzero().flatten()
    from open_clip import get_tokenizer

    assert set(rows.tolist()) <= set(vocabulary_token_ids(get_tokenizer("wiseft-demo-rn")).tolist())
    assert result.assets["zeroshot"].stat().st_size < 16e6
    for key in ("end-to-end", "linear"):
        tensors, meta = load_checkpoint(result.assets[key])
        assert meta["format"] == "wiseft-explorer/classifier" and meta["classnames"] == list(CLASSES)
        assert meta["recipe"]["mode"] == key and meta["recipe"]["weight_decay"] == 0.1 and meta["seed"] == 0
        assert (meta.get("image_tower") == "zeroshot") == (key == "linear")


def test_the_demos_recipe_is_the_one_its_shipped_checkpoints_record():
    """The library's defaults are the paper's (batch 512, BatchNorm updating, the training transform); the demo spells
    out its own, so that build-demo still rebuilds the shipped assets' recipe (BatchNorm frozen, batch 128, its
    preprocessed tensors as they are)."""
    from wiseft_explorer.experiment import DEMO_ASSETS

    config = DemoConfig()
    for asset, ft_config in (("finetuned-e2e", config.end_to_end), ("finetuned-linear", config.linear)):
        _, meta = load_checkpoint(DEMO_ASSETS / f"{asset}.safetensors")
        ours, recorded = json.loads(json.dumps(ft_config.to_dict())), meta["recipe"]
        for name in ("mode", "epochs", "lr", "batch_size", "weight_decay", "betas", "eps", "grad_clip", "bn", "seed"):
            assert recorded[name] == ours[name], (asset, name)
        assert ft_config.augment == "none" and ft_config.micro_batch is None  # as the shipped ones were trained


def test_zero_shot_temperature_is_the_recipes_and_heads_use_it(built):
    root, result = built
    tensors, meta = load_checkpoint(result.assets["zeroshot"])
    wanted = meta["recipe"]["zero_shot_logit_scale"]
    assert wanted == DemoConfig().pretrain.zero_shot_logit_scale
    assert tensors["logit_scale"].float().exp().item() == pytest.approx(wanted, rel=1e-3)
    # The learned temperature is kept in the summary: a tiny run barely moves it from CLIP's start (1/0.07).
    assert meta["pretrain_summary"]["learned_logit_scale"] == pytest.approx(1 / 0.07, rel=0.05)
    pair = load_models(load_experiment(root / "experiments" / "demo.toml"))
    # The zero-shot head's rows are unit text embeddings times that temperature.
    norms = pair.zeroshot.head.weight.norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, wanted), rtol=1e-2)


@pytest.mark.parametrize("stem", ["demo", "demo-linear", "demo-soups"])
def test_loads_through_the_experiment_code(built, stem):
    root, _ = built
    exp = load_experiment(root / "experiments" / f"{stem}.toml")
    assert list(exp.classnames) == list(CLASSES)
    assert [s.source for s in exp.shifts] == [f"world:{n}" for n in SHIFT_NAMES]
    assert exp.id_set.source == "world:id-test" and exp.id_val.source == "world:id-val"
    pair = load_models(exp)
    space = WeightSpace(pair.zeroshot, pair.finetuned, exp.head_policy)
    data = load_eval_set(exp.id_set, exp.classnames)
    assert len(data) == 64
    images = load_batch(data, range(16), pair.clip.preprocess)[0]
    with torch.no_grad():
        ends = [space.set_alpha(a)(images) for a in (0.0, 1.0)]
        middle = space.set_alpha(0.5)(images)
    assert middle.shape == (16, len(CLASSES)) and torch.isfinite(middle).all()
    assert torch.allclose(ends[0], pair.zeroshot(images), atol=1e-4)
    assert torch.allclose(ends[1], pair.finetuned(images), atol=1e-4)


def test_tiny_build_is_reproducible(built, tmp_path):
    _, first = built
    again = build_demo(tmp_path / "assets", DemoConfig.tiny(), experiments_dir=tmp_path / "exp", progress=False)
    for key in ("zeroshot", "end-to-end"):
        a, _ = load_checkpoint(first.assets[key])
        b, _ = load_checkpoint(again.assets[key])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), key


def test_soup_ingredients_share_theta0_and_differ_in_seed_and_lr(built):
    """The further end-to-end endpoints come from the same zero-shot tower, each with its own seed (and two with
    other learning rates), and demo-soups.toml lists them with the main end-to-end run."""
    root, result = built
    metas = {k: load_checkpoint(result.assets[k])[1] for k in ("end-to-end", "ingredient-1", "ingredient-2",
                                                                 "ingredient-3")}
    assert len({m["zeroshot_digest"] for m in metas.values()}) == 1
    assert [m["recipe"]["seed"] for m in metas.values()] == [0, 1, 2, 3]
    assert [m["recipe"]["lr"] for m in metas.values()] == [1e-4, 1e-4, 5e-5, 2e-4]
    exp = load_experiment(root / "experiments" / "demo-soups.toml")
    assert [e.name for e in exp.endpoints] == ["end-to-end", "end-to-end (seed +1)", "end-to-end (seed +2, lr 5e-05)",
                                               "end-to-end (seed +3, lr 0.0002)"]


def test_reuse_keeps_matching_endpoints_and_retrains_changed_ones(built, tmp_path):
    """--reuse trains only what changed: a second build with one ingredient's lr changed rewrites that file alone."""
    import dataclasses
    import shutil

    root, first = built
    out = tmp_path / "assets"
    shutil.copytree(first.assets["zeroshot"].parent, out)
    config = DemoConfig.tiny()
    changed = dataclasses.replace(config.ingredients[0], lr=3e-4)
    config = dataclasses.replace(config, ingredients=(changed, *config.ingredients[1:]))
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    again = build_demo(out, config, experiments_dir=tmp_path / "exp", progress=False, reuse=True)
    after = {p.name: p.stat().st_mtime_ns for p in out.glob("*.safetensors")}
    assert [name for name in after if after[name] != before[name]] == ["finetuned-e2e-1.safetensors"]
    assert again.timings["finetune-ingredient-1"] > 0 and again.timings["finetune-end-to-end"] == 0
    assert load_checkpoint(again.assets["ingredient-1"])[1]["recipe"]["lr"] == 3e-4


def test_lp_ft_endpoint_probes_with_the_linear_recipe_then_fine_tunes(built):
    """The demo's LP-FT endpoint records both stages: the demo's linear recipe as its probe, then end-to-end."""
    root, result = built
    tensors, meta = load_checkpoint(result.assets["lp-ft"])
    assert meta["method"] == "lp-ft" and [s["stage"] for s in meta["stages"]] == ["linear probe", "fine-tune"]
    probe = meta["stages"][0]
    assert probe["mode"] == "linear" and probe["lr"] == DemoConfig.tiny().linear.lr
    assert any(k.startswith("visual.") for k in tensors)  # a whole tower, not a head alone
    exp = load_experiment(root / "experiments" / "demo.toml")
    assert [e.name for e in exp.endpoints] == ["end-to-end", "linear classifier", "LP-FT", "FLYP"]


def test_flyp_endpoint_ships_its_text_tower_and_the_head_that_tower_gives(built):
    """FLYP's head is rebuilt from its text tower as rounded for storage, so the shipped head is the one the shipped
    tower gives (θ_α's heads are built from the interpolated towers the same way)."""
    import copy

    from open_clip import get_tokenizer

    from wiseft_explorer.core import zero_shot_head
    from wiseft_explorer.core.text_heads import load_text_tower

    root, result = built
    tensors, meta = load_checkpoint(result.assets["flyp"])
    assert meta["recipe"]["mode"] == "flyp" and any(k.startswith("text_tower.") for k in tensors)
    exp = load_experiment(root / "experiments" / "demo.toml").with_endpoint("FLYP")
    pair = load_models(exp)
    model = copy.deepcopy(pair.clip.model)
    model.load_state_dict(load_text_tower(exp.finetuned, model), strict=False)
    head = zero_shot_head(model, get_tokenizer("wiseft-demo-rn"), list(CLASSES), list(exp.templates))
    assert torch.allclose(head.weight, pair.finetuned.head.weight.float(), atol=2e-2)
