"""Loading an experiment's models safely: open_clip models from a tag, a file, a folder or the Hugging Face Hub
(never unpickling), fine-tuned checkpoints in each supported format, and the zero-shot / fine-tuned pair."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import tempfile
from pathlib import Path

import open_clip
import torch

from ..experiment.preprocessing import preprocess_source
from ..experiment.spec import TRANSFORMERS_PREFIX, Experiment, ModelSpec
from ..store.cache import DiskCache
from ..store.keys import carries_text_tower, file_digest, hub_revision, zeroshot_identity
from .checkpoints import (
    CLASSIFIER_FORMAT,
    CheckpointError,
    align_head_classes,
    check_checkpoint_file,
    check_compatible,
    load_checkpoint,
    load_full_state,
    paper_state_to_classifier,
    split_open_clip_state,
)
from .heads import HeadProgress, cached_zero_shot_head, open_head_cache
from .hf_clip import check_named, is_transformers_state, read_folder
from .hf_clip import finetuned_open_clip as transformers_open_clip
from .lean_import import prepare_text_tower
from .lineage import check_activation, check_zeroshot_digest, classifier_visual, tag_quick_gelu
from .models import ImageClassifier, LoadedClip, ModelLoadError, ModelPair, build_zeroshot, pick_device
from .tags import TagUnavailable, check_tag_available, is_download_failure, weights_follow_creation
from .text_heads import load_text_tower, without_text_tower
from .timm_clip import crop_pct_transform, is_timm_state, timm_classifier_head, token_layout
from .timm_clip import finetuned_open_clip as timm_open_clip

_WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "model.safetensors",
                 "open_clip_pytorch_model.bin", "pytorch_model.bin", "open_clip_pytorch_model.pth")


def register_config(path: Path, name: str) -> None:
    """Register a custom open_clip model config (its file stem must be the model name)."""
    if not path.is_file():
        raise ModelLoadError(f"model config not found: {path}; fix zeroshot.config")
    if path.stem != name:
        raise ModelLoadError(f"model config {path.name} registers model '{path.stem}', but zeroshot.model is "
                             f"'{name}': rename one so they match")
    if name not in open_clip.list_models():
        open_clip.add_model_config(path)


def load_clip(spec: ModelSpec, device: torch.device | str = "cpu") -> LoadedClip:
    """Load the zero-shot CLIP: an open_clip tag, a local file, hf-hub: id or local-dir:, never unpickling."""
    if spec.config is not None:
        register_config(spec.config, spec.name)
    pretrained = spec.pretrained or ""
    if spec.name.startswith("local-dir:"):
        # open_clip would load the folder's weights itself, with a full-unpickle fallback: use our safe loader.
        loaded = _load_from_dir(Path(spec.name.removeprefix("local-dir:")), spec.name)
    elif pretrained.startswith("local-dir:"):
        loaded = _load_from_dir(Path(pretrained.removeprefix("local-dir:")), spec.name)
    elif pretrained.startswith("hf-hub:") or spec.name.startswith("hf-hub:"):
        loaded = _load_from_hub(pretrained if pretrained.startswith("hf-hub:") else spec.name)
    elif pretrained.startswith(TRANSFORMERS_PREFIX):
        loaded = _load_transformers(Path(pretrained.removeprefix(TRANSFORMERS_PREFIX)), spec.name)
    elif pretrained and Path(pretrained).is_file():
        loaded = _create(spec.name, weights_follow=True)
        _load_zeroshot_file(loaded, Path(pretrained))
    else:
        loaded = _create(spec.name, pretrained or None)
    apply_preprocess(loaded, spec)
    loaded.source = loaded.source or (Path(pretrained).name if pretrained else spec.name)
    loaded.model.to(device).eval().requires_grad_(False)
    return loaded


def apply_preprocess(loaded: LoadedClip, spec: ModelSpec) -> None:
    """Give the model the preprocessing the experiment names (a tag's config, then explicit values), and say it."""
    from open_clip.model import set_model_preprocess_cfg
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    cfg = dict(getattr(loaded.model.visual, "preprocess_cfg", None) or {})
    pp = spec.preprocess
    if pp is not None:
        if pp.tag:
            model = pp.tag_model or spec.name
            known = open_clip.list_pretrained_tags_by_model(model)
            if pp.tag not in known:
                raise ModelLoadError(f"zeroshot.preprocess.tag: '{pp.tag}' is not an open_clip pretrained tag of "
                                     f"{model} (its tags: {', '.join(known) or 'none'}); name one of those, or the "
                                     "model it belongs to with zeroshot.preprocess.model")
            cfg = merge_preprocess_dict(cfg, open_clip.get_pretrained_cfg(model, pp.tag))  # metadata: no download
        cfg = merge_preprocess_dict(cfg, pp.overrides())
        set_model_preprocess_cfg(loaded.model, cfg)  # what open_clip's training transform is built from too
        loaded.preprocess = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
        if pp.crop_pct is not None:  # timm's eval crop, which open_clip's config cannot say
            loaded.preprocess = crop_pct_transform(loaded.preprocess, cfg, pp.crop_pct)
    loaded.preprocess_note = f"{preprocess_values(cfg)} (from {preprocess_source(spec)})"


def preprocess_values(cfg: dict) -> str:
    """An open_clip preprocessing config in one line: size, resize, interpolation, mean and std."""
    if not cfg:
        return "unknown"
    mean, std = (", ".join(f"{v:.4g}" for v in cfg[k]) for k in ("mean", "std"))
    return (f"{cfg['size']} px, resize {cfg['resize_mode']}, {cfg['interpolation']}, mean ({mean}), "
            f"std ({std})")


def _load_zeroshot_file(loaded: LoadedClip, path: Path) -> None:
    """Weights from a file: a full open_clip state dict, or a zero-shot *classifier* (image tower + head, and the
    text tower only if it kept one, like the paper's converted zeroshot.pt), whose head is then used as stored."""
    state, metadata = load_checkpoint(path)
    image_only = all(k.startswith(("visual.", "head.")) for k in state)  # then only the image tower's counts
    check_activation(metadata.get("activation"), loaded.model.visual if image_only else loaded.model, path.name,
                     loaded.name)
    if "head.weight" not in state:
        load_full_state(loaded.model, state, path.name)
        return
    head = {k.removeprefix("head."): state.pop(k) for k in [k for k in state if k.startswith("head.")]}
    if image_only:
        load_full_state(loaded.model.visual, classifier_visual(state), path.name)
    else:
        load_full_state(loaded.model, state, path.name)
    loaded.stored_head = head


def _create(name: str, tag: str | None = None, tokenizer_name: str | None = None,
            weights_follow: bool = False) -> LoadedClip:
    if not name.startswith("local-dir:") and name not in open_clip.list_models():
        raise ModelLoadError(f"unknown open_clip model '{name}'; see open_clip.list_models(), or give "
                             "zeroshot.config for a custom architecture")
    if tag:
        try:
            check_tag_available(name, tag)
        except TagUnavailable as err:
            raise ModelLoadError(str(err)) from err
    prepare_text_tower(name, open_clip.get_model_config(name))  # the preload leaves out transformers (lean_import)
    try:
        with weights_follow_creation() if weights_follow else contextlib.nullcontext():
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=tag, force_quick_gelu=tag is not None and tag_quick_gelu(name, tag))
    except (RuntimeError, OSError) as err:
        if not tag or not is_download_failure(err):
            raise  # not a fetch failure (a bad config, a bug, out of memory): its own message says more
        raise ModelLoadError(f"could not get pretrained weights '{tag}' for '{name}' ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else 'no detail'}); download the checkpoint "
                             "elsewhere and set zeroshot.pretrained to its file") from err
    return LoadedClip(model, preprocess, open_clip.get_tokenizer(tokenizer_name or name), name)


def _load_from_dir(folder: Path, name: str) -> LoadedClip:
    """Build from a folder's open_clip_config.json, then load its weights through our safe loader."""
    config = folder / "open_clip_config.json"
    if not config.is_file():
        raise ModelLoadError(f"local-dir:{folder} has no open_clip_config.json; save the model with "
                             "open_clip's push_to_hf_hub layout or use a checkpoint file")
    weights = next((folder / n for n in _WEIGHT_NAMES if (folder / n).is_file()), None)
    if weights is None:
        raise ModelLoadError(f"local-dir:{folder} has no weights file (expected one of {', '.join(_WEIGHT_NAMES)})")
    # Give open_clip a folder with only the config, so it builds the model and transforms but never loads weights.
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(config, Path(tmp) / config.name)
        loaded = _create(f"local-dir:{tmp}", tokenizer_name=f"local-dir:{folder}", weights_follow=True)
    loaded.name = name
    state, _ = load_checkpoint(weights)
    load_full_state(loaded.model, state, weights.name)
    return loaded


def _load_transformers(folder: Path, name: str) -> LoadedClip:
    """A transformers CLIPModel folder, built as open_clip's CLIP from its config.json (core.hf_clip)."""
    hf = read_folder(folder)
    config = hf.open_clip_config()
    check_named(config, name, folder)
    with tempfile.TemporaryDirectory() as tmp:  # open_clip builds model, transform and tokenizer from the folder
        (Path(tmp) / "open_clip_config.json").write_text(json.dumps({"model_cfg": config,
                                                                      "preprocess_cfg": hf.preprocess_cfg()}))
        loaded = _create(f"local-dir:{tmp}", tokenizer_name=f"local-dir:{tmp}", weights_follow=True)
    loaded.name = name
    load_full_state(loaded.model, hf.open_clip_state(), folder.name)
    return loaded


def _load_from_hub(hub_id: str) -> LoadedClip:
    """Fetch config and weights from the Hugging Face Hub, then load them like a local folder.

    Both files come from one commit, the one the cache keys name (store.keys.hub_revision): the commit fetched
    before, else the default branch's, resolved by the first download. A newer commit is fetched only once the
    model is deleted from the Hugging Face cache."""
    from open_clip.pretrained import download_pretrained_from_hf

    repo = hub_id.removeprefix("hf-hub:")
    try:
        pinned = hub_revision(hub_id)
        config = Path(download_pretrained_from_hf(repo, filename="open_clip_config.json", revision=pinned))
        weights = Path(download_pretrained_from_hf(repo, revision=pinned or hub_revision(hub_id)))
    except OSError as err:  # open_clip turns every hub failure (offline, 404, auth) into FileNotFoundError
        raise ModelLoadError(f"could not fetch {hub_id} from the Hugging Face Hub ({type(err).__name__}). Offline? "
                             "Download the repository elsewhere and use pretrained = \"local-dir:/path\"") from err
    # The folder only pairs the two cached files for _load_from_dir; everything is read by the time it returns.
    with tempfile.TemporaryDirectory(prefix="wiseft-hub-") as tmp:
        folder = Path(tmp)
        shutil.copy(config, folder / "open_clip_config.json")
        (folder / weights.name).symlink_to(weights)
        return _load_from_dir(folder, hub_id)


def load_finetuned(path: Path, zeroshot: ImageClassifier, clip: LoadedClip, exp: Experiment, *,
                   cache: DiskCache | None = None, progress: HeadProgress | None = None) -> tuple[ImageClassifier, dict]:
    """Load the fine-tuned classifier: our format, a plain open_clip state dict, a converted paper checkpoint, or a
    transformers / timm CLIP checkpoint (renamed to open_clip's layout)."""
    tensors, metadata = load_checkpoint(path)
    reference = zeroshot.state_dict()
    fmt = metadata.get("format")
    if is_transformers_state(tensors) or is_timm_state(tensors):  # other libraries' layouts, made open_clip's
        tensors, notes = (transformers_open_clip(tensors, path, clip) if is_transformers_state(tensors)
                          else timm_open_clip(tensors, path, clip, exp, zeroshot))
        metadata = {**metadata, "notes": notes}
        state = tensors if "head.weight" in tensors else _open_clip_state_to_classifier(tensors, zeroshot, clip, exp,
                                                                                           path, cache, progress)
    elif fmt == CLASSIFIER_FORMAT or "head.weight" in tensors:
        state = without_text_tower(tensors, metadata)  # a FLYP endpoint's text tower: load_text_tower reads it
        if metadata.get("model") not in (None, clip.name):
            raise CheckpointError(f"{path.name} was fine-tuned from '{metadata['model']}', but the zero-shot model "
                                  f"is '{clip.name}': use a matching pair")
        check_activation(metadata.get("activation"), clip.model.visual, path.name, clip.name)
        other = check_zeroshot_digest(metadata.get("zeroshot_digest"), classifier_visual(reference), path.name,
                                      clip.source, exp.allow_other_zeroshot)
        if other:
            metadata = {**metadata, "notes": [other]}
        if metadata.get("image_tower") == "zeroshot":  # linear-classifier checkpoints store only the head
            state.update({k: v for k, v in reference.items() if k.startswith("visual.")})
    elif any(k.startswith("image_encoder.model.visual.") for k in tensors):
        state = paper_state_to_classifier(tensors)
    elif any(k.startswith("visual.") for k in tensors):
        state = _open_clip_state_to_classifier(tensors, zeroshot, clip, exp, path, cache, progress)
    else:
        raise CheckpointError(f"{path.name}: no image-tower weights found (expected keys 'visual.*' and "
                              "'head.weight'): is this a fine-tuned CLIP checkpoint?")
    note = align_head_classes(state, metadata.get("classnames"), exp.classnames, path.name)
    if note:
        metadata = {**metadata, "notes": [*metadata.get("notes", []), note]}
    head = state.get("head.weight")
    if head is not None and head.shape[0] != len(exp.classnames):
        raise CheckpointError(f"{path.name}: its head has {head.shape[0]} classes but the experiment names "
                              f"{len(exp.classnames)}; use the class list it was fine-tuned with")
    check_compatible(reference, state, f"fine-tuned checkpoint {path.name}")
    model = copy.deepcopy(zeroshot)
    model.load_state_dict({k: v.to(reference[k].dtype) for k, v in state.items()}, strict=True)
    return model.eval().requires_grad_(False), metadata


def _open_clip_state_to_classifier(tensors: dict, zeroshot: ImageClassifier, clip: LoadedClip, exp: Experiment,
                                   path: Path, cache: DiskCache | None = None,
                                   progress: HeadProgress | None = None) -> dict[str, torch.Tensor]:
    """A full fine-tuned open_clip model: its own text tower builds the head; image-tower-only: zero-shot head."""
    visual, rest = split_open_clip_state(tensors)
    state = dict(visual)
    if any(k.startswith(("token_embedding", "text.", "transformer.")) for k in rest):
        full = copy.deepcopy(clip.model).cpu()
        load_full_state(full, dict(tensors), path.name)
        # The checkpoint holds every weight; the zero-shot identity stands for the architecture and tokenizer.
        identity = {**zeroshot_identity(exp.zeroshot), "finetuned": file_digest(path)}
        head = cached_zero_shot_head(full, clip.tokenizer, exp.classnames, exp.templates, identity, cache, "cpu",
                                     progress)
        state.update(head.state_dict(prefix="head."))
    else:
        state.update({k: v for k, v in zeroshot.state_dict().items() if k.startswith("head.")})
    return state


def load_models(exp: Experiment, progress: HeadProgress | None = None) -> ModelPair:
    """Load both models of an experiment on its device; text heads come from the disk cache when built before."""
    device = pick_device(exp.device)
    # Cheap problems first: the CLIP load and zero-shot head below take seconds to minutes.
    if exp.finetuned is None:
        raise ModelLoadError(f"{exp.name}: no [finetuned] checkpoint yet; make one with `wiseft-explorer finetune "
                             "--experiment FILE --train TRAIN_FOLDER --out ft.safetensors` and add it to the "
                             "experiment's [finetuned] table")
    check_checkpoint_file(exp.finetuned)
    clip = load_clip(exp.zeroshot, device)
    cache = open_head_cache(exp.cache_dir)
    # progress sees each head that is built (not found in the cache) from its first chunk to (C, C).
    zeroshot = build_zeroshot(clip, exp.classnames, exp.templates, device, cache=cache,
                              identity=zeroshot_identity(exp.zeroshot), progress=progress)
    layout_note = None
    if timm_classifier_head(exp.finetuned, clip):  # the pair in timm's layout: head on the un-projected token
        zeroshot, layout_note = token_layout(zeroshot, exp, clip, cache)
    finetuned, metadata = load_finetuned(exp.finetuned, zeroshot, clip, exp, cache=cache, progress=progress)
    if layout_note:
        metadata = {**metadata, "notes": [*metadata.get("notes", []), layout_note]}
    text = load_text_tower(exp.finetuned, clip.model) if carries_text_tower(exp.finetuned) else None
    return ModelPair(clip, zeroshot, finetuned.to(device), device, exp.precision, metadata, text)
