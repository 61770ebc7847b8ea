"""Zero-shot heads: built in chunks with progress, kept in the disk cache, never encoded again on a relaunch."""

from __future__ import annotations

import dataclasses

import open_clip
import pytest
import torch
from libkit import write_experiment
from open_clip.zero_shot_classifier import build_zero_shot_classifier
from safetensors.torch import save_file
from tiny import CLASSES, TEMPLATES, TINY_NAME

from wiseft_explorer.core import (
    build_zeroshot,
    cached_zero_shot_head,
    head_cache_key,
    load_clip,
    load_models,
    open_head_cache,
    zero_shot_head,
)
from wiseft_explorer.experiment import ModelSpec, load_experiment
from wiseft_explorer.store import CacheWarning, DiskCache, default_cache_dir, zeroshot_identity

MANY = [f"class number {i}" for i in range(25)]  # enough classes for several of open_clip's batches of 10


@pytest.fixture(scope="module")
def clip(tiny):
    """The tiny zero-shot CLIP (read-only)."""
    return load_clip(ModelSpec(TINY_NAME, str(tiny.zeroshot), tiny.config))


@pytest.fixture
def encodes(monkeypatch) -> list[int]:
    """Records the batch size of every call to CLIP's text tower."""
    calls: list[int] = []
    original = open_clip.model.CLIP.encode_text

    def counting(self, text, normalize=False):
        calls.append(len(text))
        return original(self, text, normalize=normalize)

    monkeypatch.setattr(open_clip.model.CLIP, "encode_text", counting)
    return calls


@pytest.fixture
def exp(tmp_path, tiny):
    """The tiny experiment with its own cache folder."""
    return load_experiment(write_experiment(tmp_path / "exp", tiny))


def test_a_relaunch_encodes_no_prompt_and_gets_the_same_head(exp, encodes):
    seen: list[tuple[int, int]] = []
    first = load_models(exp, progress=lambda done, total: seen.append((done, total)))
    assert sum(encodes) == len(CLASSES) * len(TEMPLATES) and seen == [(len(CLASSES), len(CLASSES))]
    encodes.clear()
    seen.clear()
    second = load_models(exp, progress=lambda done, total: seen.append((done, total)))
    assert encodes == [] and seen == []  # a cache hit builds nothing and reports nothing
    # Bit-identical, in fp32: the cache stores the built tensors themselves.
    assert second.zeroshot.head.weight.dtype == torch.float32
    assert torch.equal(first.zeroshot.head.weight, second.zeroshot.head.weight)
    assert torch.equal(second.zeroshot.head.bias, torch.zeros(len(CLASSES)))
    # Kept in the experiment's cache_dir, in a folder of their own (the sweep's entries stay countable).
    assert len(list((exp.cache_dir / "heads").glob("*.safetensors"))) == 1
    assert not list(exp.cache_dir.glob("*.safetensors"))


def test_order_of_classes_or_templates_and_cache_folder_are_part_of_the_key(exp, clip, encodes, tmp_path):
    cache, identity = DiskCache(tmp_path / "heads"), zeroshot_identity(exp.zeroshot)
    head = cached_zero_shot_head(clip.model, clip.tokenizer, CLASSES, TEMPLATES, identity, cache)
    variants = [(CLASSES[::-1], TEMPLATES), (CLASSES, TEMPLATES[::-1]), (CLASSES, TEMPLATES[:1])]
    for classes, templates in variants:
        encodes.clear()
        cached_zero_shot_head(clip.model, clip.tokenizer, classes, templates, identity, cache)
        assert sum(encodes) == len(classes) * len(templates), (classes, templates)
    # Reversed class names: the same rows, reversed (up to rounding of a different batch order).
    reversed_head = cached_zero_shot_head(clip.model, clip.tokenizer, CLASSES[::-1], TEMPLATES, identity, cache)
    torch.testing.assert_close(reversed_head.weight, head.weight.flip(0), atol=1e-6, rtol=0)
    # Another model's identity, or no identity at all, never reads this model's entry.
    encodes.clear()
    cached_zero_shot_head(clip.model, clip.tokenizer, CLASSES, TEMPLATES, {**identity, "zeroshot": "x"}, cache)
    build_zeroshot(clip, CLASSES, TEMPLATES, cache=cache)
    assert sum(encodes) == 2 * len(CLASSES) * len(TEMPLATES)
    # Another cache folder builds again (through load_models, which uses the experiment's cache_dir).
    load_models(exp)
    encodes.clear()
    load_models(dataclasses.replace(exp, cache_dir=tmp_path / "elsewhere"))
    assert sum(encodes) == len(CLASSES) * len(TEMPLATES)


def test_head_keys_differ_by_device_type_only(exp):
    identity = zeroshot_identity(exp.zeroshot)
    assert head_cache_key(identity, CLASSES, TEMPLATES, "cpu") == head_cache_key(identity, CLASSES, TEMPLATES)
    assert head_cache_key(identity, CLASSES, TEMPLATES, "cuda:0") == head_cache_key(identity, CLASSES, TEMPLATES,
                                                                                   "cuda:1")
    assert head_cache_key(identity, CLASSES, TEMPLATES, "cuda") != head_cache_key(identity, CLASSES, TEMPLATES)


def test_chunked_building_equals_one_call_and_reports_progress(clip):
    whole = build_zero_shot_classifier(clip.model, clip.tokenizer, MANY, TEMPLATES, num_classes_per_batch=10)
    scale = clip.model.logit_scale.exp()
    seen: list[tuple[int, int]] = []
    head = zero_shot_head(clip.model, clip.tokenizer, MANY, TEMPLATES, progress=lambda *p: seen.append(p))
    assert seen == [(10, 25), (20, 25), (25, 25)]
    # Chunks of open_clip's own batch size run the same forwards: exactly equal (torch.equal).
    assert torch.equal(head.weight, (whole.T * scale).float())
    seen.clear()
    odd = zero_shot_head(clip.model, clip.tokenizer, MANY, TEMPLATES, progress=lambda *p: seen.append(p),
                         chunk_classes=7)
    assert seen == [(7, 25), (14, 25), (21, 25), (25, 25)]
    # Other chunk sizes batch the prompts differently: equal up to float rounding (allclose at 1e-6).
    torch.testing.assert_close(odd.weight, head.weight, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="chunk_classes"):
        zero_shot_head(clip.model, clip.tokenizer, MANY, TEMPLATES, chunk_classes=0)


def test_a_truncated_entry_is_rebuilt_with_a_warning(exp, clip, encodes):
    cache, identity = open_head_cache(exp.cache_dir), zeroshot_identity(exp.zeroshot)
    fresh = cached_zero_shot_head(clip.model, clip.tokenizer, CLASSES, TEMPLATES, identity, cache)
    path = cache.path_for(head_cache_key(identity, CLASSES, TEMPLATES))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    encodes.clear()
    with pytest.warns(CacheWarning, match="truncated or corrupt"):
        pair = load_models(exp)
    assert sum(encodes) == len(CLASSES) * len(TEMPLATES)
    assert torch.equal(pair.zeroshot.head.weight, fresh.weight)
    encodes.clear()
    assert torch.equal(load_models(exp).zeroshot.head.weight, fresh.weight) and encodes == []  # stored again


def full_open_clip_checkpoint(clip, path, seed: int):
    """A 'fine-tuned' full open_clip state dict: the zero-shot weights with a perturbed text projection."""
    state = {k: v.detach().clone().contiguous() for k, v in clip.model.state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    state["text_projection"] += 0.5 * torch.randn(state["text_projection"].shape, generator=gen)
    save_file(state, str(path))
    return state


def test_the_head_of_a_full_open_clip_checkpoint_is_cached_too(tmp_path, tiny, clip, encodes):
    state = full_open_clip_checkpoint(clip, tmp_path / "full.safetensors", seed=1)
    exp = load_experiment(write_experiment(tmp_path / "exp", tiny, finetuned=tmp_path / "full.safetensors"))
    seen: list[tuple[int, int]] = []
    first = load_models(exp, progress=lambda *p: seen.append(p))
    assert sum(encodes) == 2 * len(CLASSES) * len(TEMPLATES) and seen == [(3, 3), (3, 3)]  # both heads built
    reference = open_clip.create_model(TINY_NAME)  # the checkpoint's own text tower, loaded by hand
    reference.load_state_dict(state)
    expected = zero_shot_head(reference.eval(), clip.tokenizer, CLASSES, TEMPLATES)
    assert torch.equal(first.finetuned.head.weight, expected.weight)
    assert not torch.allclose(first.finetuned.head.weight, first.zeroshot.head.weight)
    encodes.clear()
    seen.clear()
    second = load_models(exp, progress=lambda *p: seen.append(p))
    assert encodes == [] and seen == []
    assert torch.equal(second.finetuned.head.weight, first.finetuned.head.weight)
    # Another checkpoint file (other digest) is another head.
    full_open_clip_checkpoint(clip, tmp_path / "full.safetensors", seed=2)
    encodes.clear()
    third = load_models(exp)
    assert sum(encodes) == len(CLASSES) * len(TEMPLATES)
    assert not torch.equal(third.finetuned.head.weight, first.finetuned.head.weight)


def test_default_and_unusable_cache_folders(exp, tmp_path, encodes):
    assert open_head_cache(None).root == default_cache_dir() / "heads"  # $WISEFT_CACHE_DIR in the tests
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with pytest.warns(CacheWarning, match="unusable"):
        pair = load_models(dataclasses.replace(exp, cache_dir=blocked))
    assert pair.zeroshot.num_classes == len(CLASSES) and sum(encodes) > 0  # built, just not kept
