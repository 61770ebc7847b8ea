"""CLI subcommands that train: finetune and build-demo (kept apart so commands.py stays short)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..experiment.presets import PRESETS
from ..training.recipe import AUGMENT_MODES, BN_MODES, FLYP_DEFAULTS, MODES, mode_defaults
from ..training.recipe import FinetuneConfig as Recipe  # torch-free: the recipe's defaults, one home for them

# The presets that read a training set: ImageNet's train/ folders and every dataset's `-train` split.
TRAIN_PRESETS = ("imagenet", *(key for key in PRESETS if key.endswith("-train")))

if TYPE_CHECKING:  # the CLI imports torch and the library lazily, inside each command
    from ..data.sets import EvalSet

SHOWN_CLASSES = 20  # a --limit sample's per-class counts are printed for at most this many classes


def add_parsers(sub, common: argparse.ArgumentParser) -> None:
    """Register the training subcommands."""
    # Not the common options: --alpha means nothing here, and --experiment has no silent default (see _finetune).
    p = sub.add_parser("finetune", help="fine-tune the experiment's zero-shot model")
    p.add_argument("--experiment", default=None,
                   help="experiment TOML naming the zero-shot model and the classes (required with a folder --train; "
                        "its [finetuned] checkpoint may not exist yet; default with world:<set>: the built-in demo)")
    p.add_argument("--train", required=True, help="training set: an ImageFolder-layout folder or world:<set>")
    p.add_argument("--train-preset", default=None, choices=TRAIN_PRESETS,
                   help="read --train as a dataset preset: imagenet (train/<wnid>/ folders), a transfer dataset's "
                        "training split (cifar100-train, stanford-cars-train, dtd-train, sun397-train, "
                        "food101-train: the README's preset table gives each layout) or cifar10-train "
                        "(cifar-10-batches-bin/ with data_batch_*.bin)")
    p.add_argument("--out", required=True, help="output checkpoint (.safetensors, our classifier format)")
    p.add_argument("--mode", "--method", dest="mode", choices=MODES, default=Recipe.mode,
                   help="end-to-end (image tower and head), linear (head only), lp-ft (Kumar et al. 2022: a linear "
                        "probe, then end-to-end from its head) or flyp (Goyal et al. 2023: both towers with CLIP's "
                        "contrastive loss against class-prompt captions; its head is the fine-tuned text tower's "
                        "zero-shot head, and the checkpoint carries the text tower) (default: %(default)s)")
    p.add_argument("--probe-epochs", type=int, default=None,
                   help="lp-ft: the probe's (stage 1's) epochs (default: --epochs)")
    p.add_argument("--probe-lr", type=float, default=None,
                   help="lp-ft: the probe's (stage 1's) peak learning rate (default: --lr); stage 2 runs with --lr")
    p.add_argument("--epochs", type=int, default=Recipe.epochs,
                   help="passes over the training set (default: %(default)s, the paper's ImageNet runs)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate, used as given: never rescaled when --batch-size changes (default: "
                        f"{Recipe.lr}, the paper's ImageNet runs at their batch of 512, the default --batch-size; "
                        f"--mode flyp: {FLYP_DEFAULTS['lr']}, FLYP's)")
    p.add_argument("--batch-size", type=int, default=Recipe.batch_size,
                   help="images per optimiser step, over all processes under torchrun (default: %(default)s, the "
                        "paper's ImageNet runs; if it does not fit in memory, keep it and set --micro-batch)")
    p.add_argument("--micro-batch", type=int, default=None,
                   help="images per forward/backward pass and process: each step's gradients accumulate over its "
                        "passes, the same update in less memory; with --bn train, BatchNorm normalises each pass "
                        "by its own statistics (default: the whole step at once)")
    p.add_argument("--warmup", type=int, default=Recipe.warmup,
                   help="linear warmup steps before the cosine decay (default: %(default)s, the paper's; a run of "
                        "fewer than ten times as many steps warms up for a tenth of them: this project's choice)")
    p.add_argument("--augment", choices=AUGMENT_MODES, default=Recipe.augment,
                   help="end-to-end training images: train (the model's training transform, RandomResizedCrop scale "
                        "0.9-1, each image's crop seeded from --seed, the epoch and its index, as the paper's CLIP "
                        "transform) or none (the evaluation transform); the linear mode's features always use the "
                        "evaluation transform, as the paper's (default: %(default)s)")
    p.add_argument("--bn", choices=BN_MODES, default=Recipe.bn,
                   help="BatchNorm statistics (ResNet towers): train (updated while training, the paper's "
                        "model.train()) or frozen (keep the pretrained running statistics: this project's option, "
                        "the built-in demo's choice) (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None,
                   help="train on a seeded sample of this many images, every class in proportion (default: all)")
    p.add_argument("--seed", type=int, default=Recipe.seed,
                   help="seed of the sample, the shuffling and the training (default: %(default)s)")
    p.add_argument("--workers", type=int, default=None,
                   help="image-decoding worker processes (default: cores - 1, at most 8; 0 = decode in this process; "
                        "world: sets, already in memory, always use 0)")
    p.set_defaults(func=_finetune)
    p = sub.add_parser("build-demo", help="pretrain, zero-shot head, fine-tune: rebuild the built-in demo")
    p.add_argument("--out-dir", default=None, help="where to write the assets (default: the package's assets/demo)")
    p.add_argument("--tiny", action="store_true", help="a seconds-long configuration (tests)")
    p.add_argument("--reuse-pretrained", action="store_true",
                   help="keep an existing zero-shot checkpoint whose recorded recipe and seed match (skips pretraining)")
    p.add_argument("--reuse", action="store_true",
                   help="keep every existing asset whose recorded recipe, seed and zero-shot model match (pretraining "
                        "and each fine-tuned endpoint): only what is new or changed is trained")
    p.set_defaults(func=_build_demo)


def _finetune(args: argparse.Namespace) -> int:
    """Fine-tune (under torchrun: on every rank, with DistributedDataParallel; rank 0 writes the checkpoint)."""
    from ..core.distributed import process_group
    from ..experiment.parse import load_experiment

    # Joined before anything loads: with NCCL, "cuda" must already mean this rank's GPU.
    device = load_experiment(args.experiment, for_finetuning=True).device if args.experiment else "auto"
    with process_group(device) as group:
        return _finetune_in(args, group)


def _finetune_in(args: argparse.Namespace, group) -> int:
    import torch

    from ..core.heads import open_head_cache
    from ..core.loading import load_clip
    from ..core.models import build_zeroshot, classifier_metadata, pick_device
    from ..data.sets import load_eval_set
    from ..data.stream import default_workers
    from ..experiment.locations import DEFAULT_EXPERIMENT
    from ..experiment.parse import load_experiment
    from ..experiment.spec import DatasetSpec
    from ..store.keys import zeroshot_identity
    from ..training.augment import training_images
    from ..training.finetuning import FinetuneResult, save_finetuned
    from ..training.flyp import FlypResult, finetune_flyp, save_flyp
    from ..training.loader import LoaderOptions
    from ..training.recipe import FinetuneConfig

    if Path(args.out).suffix != ".safetensors":
        raise ValueError(f"{args.out}: the checkpoint must be a .safetensors file")
    if args.workers is not None and args.workers < 0:
        raise ValueError(f"--workers must be 0 or more, not {args.workers}")
    if args.mode != "lp-ft" and (args.probe_epochs is not None or args.probe_lr is not None):
        raise ValueError("--probe-epochs and --probe-lr set LP-FT's first stage: pass them with --mode lp-ft")
    if args.experiment is None and not args.train.startswith("world:"):
        raise ValueError("finetune --train FOLDER needs --experiment EXPERIMENT.toml: the experiment names the "
                         "zero-shot model and the class names the folder's classes are matched to")
    if args.experiment is None and group.is_root:
        print(f"experiment: the built-in demo ({DEFAULT_EXPERIMENT}); pass --experiment to fine-tune another model")
    exp = load_experiment(args.experiment, for_finetuning=True)
    source = args.train if args.train.startswith("world:") else str(Path(args.train).resolve())
    # An index only (paths and labels): images are decoded batch by batch while training, never held all at once.
    # Read before the models load: a missing folder or an unknown class is reported in seconds, not after CLIP.
    train = load_eval_set(DatasetSpec("train", source, limit=args.limit, preset=args.train_preset), exp.classnames,
                          seed=args.seed)
    counts = _class_counts(train.labels.tolist(), exp.classnames, args.limit if group.is_root else None)
    # World sets' pixels are in memory already: worker processes would only copy them.
    workers = 0 if train.in_memory else (default_workers() if args.workers is None else args.workers)
    given = {"lr": args.lr} if args.lr is not None else {}
    config = FinetuneConfig(**{**mode_defaults(args.mode), **given}, mode=args.mode, epochs=args.epochs,
                            batch_size=args.batch_size, warmup=args.warmup, bn=args.bn, augment=args.augment,
                            micro_batch=args.micro_batch, seed=args.seed)
    device = pick_device(exp.device)
    clip = load_clip(exp.zeroshot, device)
    torch.manual_seed(args.seed)
    images, transform = training_images(train, clip.preprocess, config)
    options = LoaderOptions(workers=workers)
    result: FinetuneResult
    if args.mode == "flyp":
        result = finetune_flyp(clip.model, clip.tokenizer, exp.classnames, exp.templates, images, config, device,
                               progress=group.is_root, loader=options, group=group)
    else:
        zeroshot = build_zeroshot(clip, exp.classnames, exp.templates, device, cache=open_head_cache(exp.cache_dir),
                                  identity=zeroshot_identity(exp.zeroshot))
        result = _run(args, zeroshot, (train, clip.preprocess, images), config, device, options, group)
    if not group.is_root:  # every rank holds the same weights; rank 0 reports and writes them
        return 0
    if result.skipped:
        _warn_undecodable(train, result.skipped, clip.preprocess)
    recipe = {"train": args.train, "images": len(train), "limit": args.limit, "class_counts": counts,
              "undecodable": len(result.skipped), "world_size": group.world_size,
              "batch_per_process": args.batch_size // group.world_size, "backend": group.backend, **transform}
    meta = classifier_metadata(clip, exp.classnames, recipe=recipe)
    out = save_flyp(args.out, result, meta) if isinstance(result, FlypResult) else save_finetuned(args.out, result, meta)
    if args.experiment is not None:
        _note_other_checkpoint(exp, out)
    ranks = f"; {group.world_size} processes" if group.distributed else ""
    print(f"wrote {out} ({args.mode}, {len(train) - len(result.skipped)} images, {result.seconds:.0f} s; "
          f"warmup {result.config.warmup} steps{ranks})")
    if result.final_loss is not None and result.train_accuracy is not None:  # both come from the same batches
        print(f"final loss {result.final_loss:.4f} (mean of the last epoch); training accuracy "
              f"{100 * result.train_accuracy:.1f}% (last epoch's batches, while training)")
    for stage in result.stages:  # LP-FT's: the probe, then end-to-end (the lines above)
        if stage["final_loss"] is not None and stage["train_accuracy"] is not None:
            print(f"  {stage['stage']}: {stage['epochs']} epoch(s) at lr {stage['lr']:g}, final loss "
                  f"{stage['final_loss']:.4f}, training accuracy {100 * stage['train_accuracy']:.1f}%")
    return 0


def _run(args: argparse.Namespace, zeroshot, data: tuple, config, device, loader, group):
    """Fine-tune in --mode; LP-FT's probe reads the images through the evaluation transform (its features)."""
    from ..training.augment import training_images
    from ..training.finetuning import finetune
    from ..training.lpft import finetune_lp_ft, probe_recipe

    train, preprocess, images = data
    if config.mode != "lp-ft":
        return finetune(zeroshot, images, config, device, progress=group.is_root, loader=loader, group=group)
    probe = probe_recipe(config, args.probe_epochs, args.probe_lr)
    probe_images, _ = training_images(train, preprocess, probe)
    return finetune_lp_ft(zeroshot, images, config, device, progress=group.is_root, loader=loader, group=group,
                          probe_config=probe, probe_data=probe_images)


def _note_other_checkpoint(exp, out: Path) -> None:
    """Say so when the experiment reads its fine-tuned checkpoint from another file than the one just written."""
    written = out.resolve()
    if not exp.endpoints or any(endpoint.checkpoint == written for endpoint in exp.endpoints):
        return
    print(f"note: {exp.path.name if exp.path else 'the experiment'} reads its fine-tuned checkpoint from "
          f"{exp.endpoints[0].checkpoint}, not from {written}; point its [finetuned] checkpoint at this file "
          "(relative paths in an experiment file start at its folder, --out at the current folder)", file=sys.stderr)


def _class_counts(labels: Sequence[int], classnames: Sequence[str], limit: int | None) -> list[int]:
    """Training images per class (in class order); printed for a --limit sample, with a warning for empty classes."""
    counts = [0] * len(classnames)
    for label in labels:
        counts[label] += 1
    if limit is not None:
        shown = ", ".join(f"{name} {n}" for name, n in zip(classnames[:SHOWN_CLASSES], counts, strict=False))
        if len(classnames) > SHOWN_CLASSES:
            shown += f", ... ({len(classnames)} classes, {min(counts)} to {max(counts)} images each)"
        print(f"training sample: {len(labels)} images (--limit {limit}, drawn with --seed); per class: {shown}")
    empty = [name for name, n in zip(classnames, counts, strict=True) if n == 0]
    if empty:
        hint = ""
        if limit is not None and limit < len(classnames):
            hint = f"; --limit {limit} is below the number of classes, {len(classnames)}"
        print(f"warning: no training images for {len(empty)} of {len(classnames)} classes, e.g. {empty[0]!r}: "
              f"fine-tuning will teach the model never to predict them{hint}", file=sys.stderr)
    return counts


def _warn_undecodable(train: EvalSet, skipped: Sequence[int], preprocess: Callable) -> None:
    """One warning line: how many training images could not be decoded, and one of them with the reason."""
    from ..data.sets import load_batch

    # The example is decoded once more, here, only to name its reason (workers report failures as indices).
    _, _, failed = load_batch(train, [skipped[0]], preprocess)
    reason = failed[0][1] if failed else "failed to load"
    where = train.paths[skipped[0]] if train.paths else f"image #{skipped[0]}"
    print(f"warning: {len(skipped)} training image(s) could not be decoded and were skipped, e.g. {where}: {reason}",
          file=sys.stderr)


def _build_demo(args: argparse.Namespace) -> int:
    from ..demo.build import DemoConfig, build_demo

    config = DemoConfig.tiny() if args.tiny else DemoConfig()
    result = build_demo(Path(args.out_dir) if args.out_dir else None, config, reuse_pretrained=args.reuse_pretrained,
                        reuse=args.reuse)
    for name, path in {**result.assets, **result.experiments}.items():
        print(f"{name}: {path}")
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings.items()))
    return 0

