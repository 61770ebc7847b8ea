"""Checkpoints: our safetensors format, compact rows, plain open_clip state dicts, and clear refusals."""

from __future__ import annotations

import json
import os
import stat

import open_clip
import pytest
import torch
from libkit import shared_runtime
from safetensors.torch import save_file
from tiny import TINY_CONFIG

from wiseft_explorer.core import (
    CLASSIFIER_FORMAT,
    CheckpointError,
    ImageClassifier,
    check_compatible,
    classifier_metadata,
    load_checkpoint,
    load_finetuned,
    save_checkpoint,
)


@pytest.fixture(scope="module")
def rt(tiny):
    """The shared tiny runtime (models loaded once)."""
    return shared_runtime(tiny)


def ft_state(rt) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in rt.models.finetuned.state_dict().items()}


def save_ft(rt, path, state, **meta):
    return save_checkpoint(path, state, {**classifier_metadata(rt.models.clip, rt.experiment.classnames), **meta})


def load_ft(rt, path):
    pair = rt.models
    return load_finetuned(path, pair.zeroshot, pair.clip, rt.experiment)


def test_our_format_round_trips(rt, tmp_path):
    state = ft_state(rt)
    path = save_ft(rt, tmp_path / "ft.safetensors", state, recipe={"lr": 3e-5, "steps": [1, 2]}, seed=4)
    tensors, meta = load_checkpoint(path)
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)
    assert meta["format"] == CLASSIFIER_FORMAT and meta["recipe"] == {"lr": 3e-5, "steps": [1, 2]}
    assert meta["seed"] == 4 and meta["classnames"] == list(rt.experiment.classnames)
    model, meta2 = load_ft(rt, path)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert meta2["seed"] == 4
    assert model is not rt.models.finetuned and model.visual is not rt.models.zeroshot.visual


@pytest.mark.parametrize("case", ["missing", "extra", "shape", "classes", "model-name"])
def test_incompatible_fine_tuned_checkpoints_name_the_problem(rt, tmp_path, case):
    state, meta = ft_state(rt), {}
    keys = list(state)
    if case == "missing":
        del state[keys[3]], state[keys[5]]
        expected = f"2 missing keys (first: {keys[3]}, {keys[5]})"
    elif case == "extra":
        state["visual.extra.weight"] = torch.zeros(2)
        expected = "1 unexpected keys (first: visual.extra.weight)"
    elif case == "shape":
        w = state["visual.conv1.weight"]
        state["visual.conv1.weight"] = torch.zeros(w.shape[0] + 1, *w.shape[1:])
        expected = (f"1 shape mismatches (first: visual.conv1.weight expected {tuple(w.shape)}, "
                    f"got {(w.shape[0] + 1, *w.shape[1:])})")
    elif case == "classes":
        state["head.weight"] = torch.cat([state["head.weight"], state["head.weight"][:1]])
        state["head.bias"] = torch.zeros(4)
        expected = "its head has 4 classes but the experiment names 3"
    else:
        meta = {"model": "ViT-B-32"}
        expected = "was fine-tuned from 'ViT-B-32', but the zero-shot model is 'wiseft-tiny-rn'"
    path = save_ft(rt, tmp_path / f"{case}.safetensors", state, **meta)
    with pytest.raises(CheckpointError) as info:
        load_ft(rt, path)
    assert expected in str(info.value) and f"{case}.safetensors" in str(info.value)


def test_a_different_architecture_is_refused_with_shapes(rt, tmp_path):
    wide_name = "wiseft-tiny-rn-wide"
    config = tmp_path / f"{wide_name}.json"
    config.write_text(json.dumps({**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "width": 16}}))
    open_clip.add_model_config(config)
    wide = open_clip.create_model(wide_name)
    other = ImageClassifier(wide.visual, torch.nn.Linear(TINY_CONFIG["embed_dim"], 3))
    path = save_checkpoint(tmp_path / "wide.safetensors", other.state_dict(), {"format": CLASSIFIER_FORMAT})
    with pytest.raises(CheckpointError, match=r"shape mismatches \(first: visual.conv1.weight expected "
                                              r"\(4, 3, 3, 3\), got \(8, 3, 3, 3\)\)"):
        load_ft(rt, path)
    text_only = save_checkpoint(tmp_path / "text.safetensors", {"token_embedding.weight": torch.zeros(3, 2)})
    with pytest.raises(CheckpointError, match="no image-tower weights found"):
        load_ft(rt, text_only)


def test_check_compatible_lists_the_first_three():
    ref = {f"k{i}": torch.zeros(2) for i in range(6)}
    with pytest.raises(CheckpointError, match=r"5 missing keys \(first: k1, k2, k3\)"):
        check_compatible(ref, {"k0": torch.zeros(2)}, "thing")
    check_compatible(ref, {k: torch.ones(2) for k in ref}, "thing")  # same layout: no error


@pytest.mark.parametrize(("suffix", "bad"), [(".safetensors", float("nan")), (".pt", float("inf"))])
def test_nan_and_inf_weights_are_refused_naming_the_tensor(rt, tmp_path, suffix, bad):
    state = ft_state(rt)
    state["visual.layer1.0.conv2.weight"].view(-1)[:3] = bad
    path = tmp_path / f"bad{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_checkpoint(path, state)
    with pytest.raises(CheckpointError, match=r"bad\S* tensor 'visual.layer1.0.conv2.weight' has 3 NaN/Inf"):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 5, 40, 0.5, -10])
def test_truncated_and_empty_files_are_clear_errors(tiny, tmp_path, keep):
    data = tiny.finetuned.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else (len(data) + keep if keep < 0 else keep)
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:size])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith("cut.safetensors") and "\n" not in message
    assert ("empty (0 bytes)" in message) if size == 0 else ("truncated or corrupt" in message)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_checkpoint(tmp_path / "never-written.safetensors")


def test_compact_zero_rows_are_lossless(tmp_path):
    gen = torch.Generator().manual_seed(0)
    sparse = torch.zeros(200, 16)
    used = torch.tensor([0, 3, 17, 150, 199])
    sparse[used] = torch.randn(5, 16, generator=gen)
    sparse[42, 7] = -0.0  # a negative zero row is still all-zero
    tensors = {"emb": sparse, "dense": torch.randn(200, 16, generator=gen), "small": torch.zeros(10, 4),
               "vec": torch.zeros(300), "ids": torch.zeros(100, 3, dtype=torch.long), "half": sparse.half()}
    compact = save_checkpoint(tmp_path / "compact.safetensors", tensors, {"note": "x"})
    plain = save_checkpoint(tmp_path / "plain.safetensors", tensors, {"note": "x"}, compact=False)
    assert plain.stat().st_size - compact.stat().st_size > 0.9 * 195 * 16 * (4 + 2)  # emb (fp32) + half (fp16)
    for path in (compact, plain):
        loaded, meta = load_checkpoint(path)
        assert meta == {"note": "x"}
        assert loaded.keys() == tensors.keys()
        for key, value in tensors.items():
            assert loaded[key].dtype == value.dtype and torch.equal(loaded[key], value), key
    halved, _ = load_checkpoint(save_checkpoint(tmp_path / "fp16.safetensors", tensors, dtype=torch.float16))
    assert halved["emb"].dtype == torch.float16 and halved["ids"].dtype == torch.long
    assert torch.equal(halved["emb"], sparse.half())


def test_foreign_safetensors_metadata_stays_a_string(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"w": torch.ones(2)}, str(path), metadata={"format": "pt", "json": "[1]"})
    tensors, meta = load_checkpoint(path)
    assert meta == {"format": "pt", "json": [1]} and torch.equal(tensors["w"], torch.ones(2))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_plain_open_clip_state_dict_as_fine_tuned_checkpoint(rt, tmp_path, suffix):
    full = {k: v.detach().clone() for k, v in rt.models.clip.model.state_dict().items()}
    path = tmp_path / f"openclip{suffix}"
    if suffix == ".safetensors":
        save_file(full, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in full.items()}, "epoch": 3}
                   if suffix == ".bin" else full, path)
    model, _ = load_ft(rt, path)
    # The zero-shot CLIP passed off as "fine-tuned": its own text tower rebuilds exactly the zero-shot classifier.
    reference = rt.models.zeroshot.state_dict()
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, reference[key], atol=1e-6, rtol=0, msg=key)
    visual_only = {k: v for k, v in full.items() if k.startswith("visual.")}
    save_file(visual_only, str(tmp_path / "visual.safetensors"))
    model, _ = load_ft(rt, tmp_path / "visual.safetensors")
    assert torch.equal(model.head.weight, rt.models.zeroshot.head.weight)  # image tower only: zero-shot head


def test_weights_only_load_accepts_plain_containers(tmp_path):
    path = tmp_path / "nested.pth"
    torch.save({"state_dict": {"a": torch.ones(2)}, "optimizer": {"lr": 0.1}}, path)
    assert list(load_checkpoint(path)[0]) == ["a"]
    torch.save([torch.ones(2)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="expected a state dict .names -> tensors., got list"):
        load_checkpoint(tmp_path / "list.pt")


@pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_checkpoints_get_the_umask_mode_not_safetensors_0600(tmp_path, umask, mode):
    # safetensors creates its files 0600; a checkpoint the user shares must get the mode any new file would.
    old = os.umask(umask)
    try:
        path = save_checkpoint(tmp_path / "ck.safetensors", {"w": torch.ones(2)}, {"format": "test"})
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
