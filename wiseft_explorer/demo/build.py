"""build-demo: pretrain a small CLIP on the world -> zero-shot head -> fine-tune every endpoint -> assets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import open_clip
import torch
from torch import nn

from ..core.checkpoints import OPEN_CLIP_FORMAT, load_checkpoint, save_checkpoint
from ..core.heads import zero_shot_head
from ..core.models import ImageClassifier, LoadedClip, classifier_metadata
from ..experiment.locations import BUILTIN_EXPERIMENTS, DEMO_ASSETS
from ..training.recipe import FinetuneConfig
from ..world.captions import DEMO_TEMPLATES
from ..world.render import CLASSES
from ..world.sets import make_set
from .experiments import DEMO_MODEL, write_experiments
from .family import FamilyConfig, family_stage
from .pretrain import (
    PretrainConfig,
    create_model,
    image_normalisation,
    images_to_tensor,
    pretrain,
    vocabulary_token_ids,
)
from .stages import Stage, StageModels, fp16_roundtrip, run_stage, stage_record

# The demo's architecture: open_clip's ModifiedResNet (fast on CPU at 32 px) and a small text transformer.
DEMO_MODEL_CONFIG: dict = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 32, "head_width": 64},
    "text_cfg": {"context_length": 24, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 4},
}
ASSET_NAMES = {"config": f"{DEMO_MODEL}.json", "zeroshot": "zeroshot.safetensors"}


# The demo's own recipe writes out every setting that differs from the library's defaults (the paper's), so the
# shipped assets stay what this code rebuilds: batch 128, BatchNorm statistics frozen (photo-only batch statistics
# would overwrite the pretrained ones and hurt every other style), no training transform (the world's images are
# preprocessed tensors already).
def _e2e_default() -> FinetuneConfig:
    # lr 1e-4 for 20 epochs: ID saturates, so the ID curve bends (at lr 3e-5 for 10 epochs WiSE-FT's ID at 0.5 was
    # 5.7 points below fine-tuned on 700 images; here 3.6 on those and 5.5 on 3,000, see the README's demo section).
    return FinetuneConfig(mode="end-to-end", epochs=20, lr=1e-4, batch_size=128, warmup=100, bn="frozen",
                          augment="none")


def _linear_default() -> FinetuneConfig:
    # lr 1e-2: the head starts at norm 47 (the zero-shot temperature), so 1e-3 moved it too little (+6.6 ID).
    return FinetuneConfig(mode="linear", epochs=10, lr=1e-2, batch_size=128, warmup=50, bn="frozen",
                          augment="none")


def _ingredients_default() -> tuple[FinetuneConfig, ...]:
    # Further end-to-end fine-tunings from the same θ₀ for soups, Model Stock and Fisher merging: as the soups
    # paper's ingredients, they differ in seed (the shuffling) and learning rate (half and twice the main run's).
    main = _e2e_default()
    return (replace(main, seed=1), replace(main, seed=2, lr=5e-5), replace(main, seed=3, lr=2e-4))


def _lp_ft_default() -> FinetuneConfig:
    # LP-FT: the demo's linear recipe as the probe (stage 1), then its end-to-end recipe from the probe's head.
    return replace(_e2e_default(), mode="lp-ft")


def _flyp_default() -> FinetuneConfig:
    # FLYP: both towers with CLIP's loss against class-prompt captions. FLYP's own settings where the demo has none
    # of its own (weight decay 0.1, no gradient clipping); the demo's batch, lr, BatchNorm and no-crop choices, and 10
    # epochs (half the end-to-end run's: a FLYP step also runs the text tower).
    return FinetuneConfig(mode="flyp", epochs=10, lr=1e-4, batch_size=128, warmup=100, grad_clip=float("inf"),
                          bn="frozen", augment="none")


def ingredient_title(config: FinetuneConfig, main: FinetuneConfig) -> str:
    """An ingredient's endpoint name: what differs from the main end-to-end run (seed offset and learning rate)."""
    lr = f", lr {config.lr:g}" if config.lr != main.lr else ""
    return f"end-to-end (seed +{config.seed}{lr})"


@dataclass(frozen=True)
class DemoConfig:
    """Everything build-demo does, from one seed (defaults: the committed demo)."""

    seed: int = 0
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train_size: int = 6000
    end_to_end: FinetuneConfig = field(default_factory=_e2e_default)
    linear: FinetuneConfig = field(default_factory=_linear_default)
    ingredients: tuple[FinetuneConfig, ...] = field(default_factory=_ingredients_default)
    lp_ft: FinetuneConfig = field(default_factory=_lp_ft_default)  # stage 2; stage 1 is `linear`
    flyp: FinetuneConfig = field(default_factory=_flyp_default)
    family: FamilyConfig = field(default_factory=FamilyConfig)  # the standard classifiers that draw the demo's line
    eval_limit: int | None = None  # images per eval set in the experiment files (None: each set's default)
    dtype: str = "float16"  # storage precision of the assets

    @classmethod
    def tiny(cls) -> DemoConfig:
        """A seconds-long configuration for tests: the same pipeline on a handful of images."""
        return cls(
            pretrain=PretrainConfig(steps=4, schedule_steps=None, batch_size=32, warmup=2, pool_size=256),
            train_size=128,
            end_to_end=FinetuneConfig(mode="end-to-end", epochs=1, lr=1e-4, batch_size=32, warmup=1, bn="frozen",
                                      augment="none"),
            linear=FinetuneConfig(mode="linear", epochs=2, lr=1e-3, batch_size=32, warmup=1, bn="frozen",
                                  augment="none"),
            ingredients=tuple(FinetuneConfig(mode="end-to-end", epochs=1, lr=lr, batch_size=32, warmup=1, bn="frozen",
                                             augment="none", seed=k) for k, lr in ((1, 1e-4), (2, 5e-5), (3, 2e-4))),
            lp_ft=FinetuneConfig(mode="lp-ft", epochs=1, lr=1e-4, batch_size=32, warmup=1, bn="frozen",
                                 augment="none"),
            flyp=FinetuneConfig(mode="flyp", epochs=1, lr=1e-4, batch_size=32, warmup=1, grad_clip=float("inf"),
                                bn="frozen", augment="none"),
            family=FamilyConfig.tiny(),
            eval_limit=64,
        )

    def to_dict(self) -> dict:
        """JSON-able record of the configuration."""
        return asdict(self)

    def stages(self) -> list[Stage]:
        """Every fine-tuned endpoint build-demo writes, main ones first."""
        return [Stage("end-to-end", "finetuned-e2e.safetensors", "end-to-end", self.end_to_end),
                Stage("linear", "finetuned-linear.safetensors", "linear classifier", self.linear),
                Stage("lp-ft", "finetuned-lpft.safetensors", "LP-FT", self.lp_ft, probe=self.linear),
                Stage("flyp", "finetuned-flyp.safetensors", "FLYP", self.flyp),
                *(Stage(f"ingredient-{k}", f"finetuned-e2e-{k}.safetensors", ingredient_title(c, self.end_to_end), c)
                  for k, c in enumerate(self.ingredients, 1))]


@dataclass
class DemoResult:
    """What build-demo wrote and how long each stage took (seconds)."""

    assets: dict[str, Path]
    experiments: dict[str, Path]
    timings: dict[str, float]
    pretrain_summary: dict


def write_model_config(out_dir: Path) -> Path:
    """Write the demo's open_clip model config and register it with open_clip."""
    path = out_dir / ASSET_NAMES["config"]
    path.write_text(json.dumps(DEMO_MODEL_CONFIG, indent=4) + "\n", encoding="utf-8")
    open_clip.add_model_config(path)
    return path


def _metadata(clip: LoadedClip, config: DemoConfig, stage: str) -> dict:
    return classifier_metadata(clip, CLASSES, base_model={"name": DEMO_MODEL, "pretrained": ASSET_NAMES["zeroshot"]},
                               templates=list(DEMO_TEMPLATES), train_set="world:train", train_size=config.train_size,
                               demo_config=config.to_dict(), stage=stage)


def pretrain_stage(out_dir: Path, config: DemoConfig, dtype: torch.dtype, reuse: bool = False,
                   callback: Callable[[int, float], None] | None = None,
                   progress: bool = True) -> tuple[nn.Module, object, dict]:
    """Stage 1: contrastive pretraining, saved as the zero-shot checkpoint (reused if its recipe matches)."""
    pt_config = PretrainConfig(**{**config.pretrain.to_dict(), "seed": config.seed})
    model, tokenizer = create_model(DEMO_MODEL, config.seed, pt_config.logit_scale_init)
    path = out_dir / ASSET_NAMES["zeroshot"]
    if reuse and path.is_file():
        state, meta = load_checkpoint(path)
        # Pretraining is deterministic from the seed, so a checkpoint of the same recipe is the same model.
        if meta.get("recipe") == json.loads(json.dumps(pt_config.to_dict())) and meta.get("seed") == config.seed:
            model.load_state_dict({k: v.float() for k, v in state.items()})
            return model.eval(), tokenizer, meta.get("pretrain_summary", {})
    summary = pretrain(model, tokenizer, pt_config, callback=callback, progress=progress)
    summary["torch_threads"] = torch.get_num_threads()
    fp16_roundtrip(model, dtype)
    vocab = vocabulary_token_ids(tokenizer)
    used = int((model.token_embedding.weight != 0).any(dim=1).sum())
    if used > len(vocab):  # rows outside the world's vocabulary must have stayed exactly zero
        raise RuntimeError(f"{used} token-embedding rows are non-zero but the world vocabulary has {len(vocab)}")
    save_checkpoint(path, model.state_dict(), {
        "format": OPEN_CLIP_FORMAT, "model": DEMO_MODEL, "model_config": DEMO_MODEL_CONFIG, "seed": config.seed,
        "recipe": pt_config.to_dict(), "pretrain_summary": summary, "vocabulary_rows": used}, dtype=dtype)
    return model, tokenizer, summary


# Endpoint names in the experiment files, and which endpoints each built-in experiment shows.
MAIN_PATHS = ("end-to-end", "linear", "lp-ft", "flyp")
SOUP_PATHS = ("end-to-end", "ingredient-")


def build_demo(out_dir: str | Path | None = None, config: DemoConfig | None = None,
               experiments_dir: str | Path | None = None, progress: bool = True,
               reuse_pretrained: bool = False, reuse: bool = False) -> DemoResult:
    """Build every demo asset into `out_dir` and the experiment files into `experiments_dir`.

    Defaults: the package's assets/demo and assets/experiments; with another `out_dir`, experiments go there too.
    `reuse` keeps every asset whose recorded recipe, seed and θ₀ match (pretraining included); `reuse_pretrained`
    only the zero-shot checkpoint.
    """
    config = config or DemoConfig()
    if out_dir is None:
        # The package's own assets: from a checkout, the files git ships and `pip install` copies.
        out_dir, experiments_dir = DEMO_ASSETS, experiments_dir or BUILTIN_EXPERIMENTS
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    experiments_dir = Path(experiments_dir) if experiments_dir is not None else out_dir
    experiments_dir.mkdir(parents=True, exist_ok=True)
    dtype = getattr(torch, config.dtype)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    assets = {"config": write_model_config(out_dir)}

    # 1. Contrastive pretraining: the "web-scale" zero-shot model.
    model, tokenizer, summary = pretrain_stage(out_dir, config, dtype, reuse or reuse_pretrained, progress=progress)
    assets["zeroshot"] = out_dir / ASSET_NAMES["zeroshot"]
    clip = LoadedClip(model, None, tokenizer, DEMO_MODEL)
    timings["pretrain"] = time.perf_counter() - t0

    # 2. Zero-shot classifier: image tower + head from class names x prompt templates.
    head = zero_shot_head(model, tokenizer, list(CLASSES), list(DEMO_TEMPLATES))
    zeroshot = ImageClassifier(model.visual, head).eval()
    mean, std = image_normalisation(model)
    world = make_set("train", seed=config.seed, n=config.train_size)
    data = (images_to_tensor(world.images, mean, std), torch.from_numpy(world.labels))

    # 3. Fine-tuning: end-to-end (the paper's main curve), linear classifier (its second curve), LP-FT, FLYP and the
    # soups' further end-to-end ingredients; each kept with `reuse` when its recorded stage matches.
    titles, models = {}, StageModels(zeroshot, clip, list(CLASSES), list(DEMO_TEMPLATES))
    for stage in config.stages():
        record = stage_record(stage, config.seed, config.train_size, zeroshot)
        assets[stage.key], seconds = run_stage(stage, models, data, out_dir, _metadata(clip, config, stage.key),
                                               record, dtype, reuse, progress)
        titles[stage.key] = stage.title
        timings[f"finetune-{stage.key}"] = seconds if seconds is not None else 0.0

    # 4. The demo's line: small standard classifiers trained from scratch, their accuracies on every demo set.
    t = time.perf_counter()
    assets["family"] = family_stage(out_dir, config.seed, config.family, reuse, progress)
    timings["family"] = time.perf_counter() - t

    # 5. Experiment files the app and CLI read: the default shows the main fine-tunings as WiSE-FT paths (the
    # paper's Figure 1); demo-linear keeps the linear classifier alone; demo-soups the end-to-end ingredients.
    def endpoints(prefixes: tuple[str, ...]) -> dict[str, str]:
        return {titles[key]: assets[key].name for key in titles if key.startswith(prefixes)}

    groups = {"demo": ("Built-in demo", endpoints(MAIN_PATHS)),
              "demo-linear": ("Built-in demo (linear-classifier fine-tuning)", endpoints(("linear",))),
              "demo-soups": ("Built-in demo (four end-to-end fine-tunings: soups, Model Stock, Fisher)",
                             endpoints(SOUP_PATHS))}
    names = {key: path.name for key, path in assets.items()}
    experiments = write_experiments(out_dir, experiments_dir, names, groups, config.eval_limit)
    timings["total"] = time.perf_counter() - t0
    return DemoResult(assets, experiments, {k: round(v, 1) for k, v in timings.items()}, summary)
